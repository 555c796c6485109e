"""`--out` names a file the command writes; a link standing at that name is replaced, never
written through (a root-run `trust get --out /tmp/x` must not overwrite what an attacker's
link in /tmp names). A directory export refuses a link outright."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ok, refused
from tests.e2e.conftest import Client


def test_a_link_at_out_is_replaced_and_what_it_names_is_untouched(synced: Client, tmp_path: Path) -> None:
    victim = tmp_path / "root-only.txt"
    victim.write_bytes(b"secret")
    victim.chmod(0o600)
    commands = {
        "get": ["get", "rekor-key-v2"],
        "export": ["export", "--format", "trusted-root"],
        "snapshot": ["snapshot", "export"],
    }
    for name, args in commands.items():
        link = tmp_path / f"{name}.out"
        link.symlink_to(victim)
        ok(synced.run(*args, "--out", str(link)))
        assert not link.is_symlink() and link.stat().st_size > 0, name
        assert victim.read_bytes() == b"secret" and (victim.stat().st_mode & 0o777) == 0o600, name
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    (tmp_path / "export-dir").symlink_to(directory)
    refused(synced.run("export", "--out", str(tmp_path / "export-dir")), 2, "symbolic link")
    assert os.listdir(directory) == []
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"  # the trust held is intact
