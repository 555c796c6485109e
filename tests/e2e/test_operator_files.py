"""Operator directories others prepare (issue 21): a link planted in a served directory or a
drive is refused in one line, and what it pointed to is untouched."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ok
from tests.e2e.operators import publish_demo_content, repo


def test_a_push_lock_planted_as_a_link_never_touches_what_it_points_to(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    ok(repo(workspace, "init"))
    publish_demo_content(workspace, tmp_path)
    served = tmp_path / "www"
    ok(repo(workspace, "push", "--to", str(served)))
    root_key = workspace / "keys" / "root.pem"
    before = root_key.read_bytes()
    lock = served / ".stella-trust-push.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(root_key)  # whoever deploys the served directory planted it
    refused = repo(workspace, "push", "--to", str(served))
    assert refused.code != 0 and "symbolic link" in refused.err, refused
    assert refused.err.count("\n") <= 2 and "Traceback" not in refused.err
    assert root_key.read_bytes() == before  # was: truncated, then a pid written into it
    lock.unlink()
    ok(repo(workspace, "timestamp", "--to", str(served)))  # the hint followed: the next push works


def test_export_keys_never_writes_or_chmods_through_a_link_on_the_drive(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    ok(repo(workspace, "init"))
    drive = tmp_path / "drive"
    (drive / "keys").mkdir(parents=True)
    readable = tmp_path / "preparers-copy.pem"
    readable.write_bytes(b"")
    readable.chmod(0o644)
    (drive / "keys" / "timestamp.pem").symlink_to(readable)  # the drive's preparer wants a copy
    ok(repo(workspace, "export-keys", str(drive), "--roles", "timestamp"))
    assert readable.read_bytes() == b"" and readable.stat().st_mode & 0o777 == 0o644
    exported = drive / "keys" / "timestamp.pem"
    assert not exported.is_symlink() and exported.stat().st_mode & 0o777 == 0o600
    assert exported.read_bytes() == (workspace / "keys" / "timestamp.pem").read_bytes()

    linked = tmp_path / "drive2"
    linked.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (linked / "keys").symlink_to(elsewhere)  # the whole keys directory redirected
    refused = repo(workspace, "export-keys", str(linked), "--roles", "timestamp")
    assert refused.code != 0 and "link" in refused.err and "Traceback" not in refused.err, refused
    assert os.listdir(elsewhere) == []
