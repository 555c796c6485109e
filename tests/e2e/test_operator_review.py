"""Regressions from the independent review of the operator side: each attack or mistake
is refused with one line and the served repository is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stella_trust.repository import RepoError, Repository
from stella_trust.repository import pushing as pushing_module
from tests.conftest import clean_env, ok
from tests.e2e.operators import repo


def served_files(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != pushing_module.PUSH_LOCK
    }


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, Path]:
    """(signing workspace, served directory) with one published target."""
    signing, www = tmp_path / "signing", tmp_path / "www"
    ok(repo(signing, "init", "--root-keys", "1", "--root-threshold", "1"))
    (tmp_path / "a.txt").write_text("a")
    ok(repo(signing, "add-target", str(tmp_path / "a.txt")))
    ok(repo(signing, "publish", "--to", str(www)))
    return signing, www


def test_a_mirror_cannot_replace_older_roots_or_the_pin(tmp_path: Path, served: tuple[Path, Path]) -> None:
    signing, www = served
    ok(repo(signing, "set-expiry", "root", "400d"))
    ok(repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem")))
    ok(repo(signing, "commit", "--to", str(www)))
    mirror = tmp_path / "mirror"
    shutil.copytree(www, mirror)
    fake = json.loads((mirror / "metadata" / "1.root.json").read_text())
    fake["signatures"] = []
    (mirror / "metadata" / "1.root.json").write_text(json.dumps(fake))
    genuine = (signing / "repository" / "metadata" / "1.root.json").read_bytes()
    ok(repo(signing, "pull", "--from", str(mirror), env=clean_env()))  # its own history wins
    assert (signing / "repository" / "metadata" / "1.root.json").read_bytes() == genuine
    fresh = tmp_path / "fresh"
    ok(
        repo(
            fresh,
            "pull",
            "--from",
            str(mirror),
            "--root",
            str(www / "metadata" / "2.root.json"),
            env=clean_env(),
        )
    )
    roots = ok(repo(fresh, "roots", "--json", env=clean_env())).json()
    assert roots["first"]["version"] == 2  # the unchained root 1 is never offered as a pin
    before = served_files(www)
    pushed = repo(fresh, "push", "--to", str(www), env=clean_env())
    assert (
        pushed.code == 1 and "metadata/1.root.json is already published with different content" in pushed.err
    )
    assert served_files(www) == before


def test_two_machines_with_the_same_version_cannot_both_publish(
    tmp_path: Path, served: tuple[Path, Path]
) -> None:
    signing, www = served
    other = tmp_path / "other"
    shutil.copytree(signing, other)
    (tmp_path / "b.txt").write_text("b")
    ok(repo(signing, "add-target", str(tmp_path / "b.txt")))
    ok(repo(signing, "publish", "--to", str(www)))  # targets v3 with b.txt
    ok(repo(other, "remove-target", "a.txt"))
    ok(repo(other, "publish"))  # its own targets v3, on its own counters
    for _ in range(3):
        ok(repo(other, "bump-online", "--force"))  # its timestamp now ahead of the served one
    before = served_files(www)
    refused = repo(other, "push", "--to", str(www))
    assert refused.code == 1 and "is already published with different content" in refused.err
    assert served_files(www) == before


def test_a_push_never_serves_a_listed_target_without_its_file(
    tmp_path: Path, served: tuple[Path, Path]
) -> None:
    _, www = served
    light = tmp_path / "light"
    ok(
        repo(
            light,
            "pull",
            "--from",
            str(www),
            "--root",
            str(www / "metadata" / "1.root.json"),
            "--metadata-only",
            env=clean_env(),
        )
    )
    refused = repo(light, "push", "--to", str(tmp_path / "new-www"), env=clean_env())
    assert refused.code == 1 and "clients would reject this repository" in refused.err
    assert not (tmp_path / "new-www" / "metadata").exists()


def test_push_copies_only_the_repository_never_a_linked_key(served: tuple[Path, Path]) -> None:
    signing, www = served
    os.symlink(signing / "keys" / "root.pem", signing / "repository" / "targets" / "notes.txt")
    ok(repo(signing, "bump-online", "--force", "--to", str(www)))
    assert not (www / "targets" / "notes.txt").exists()


def test_pull_refuses_target_names_that_leave_targets(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c" / "evil"
    evil = Repository.create(deep, root_keys=1, root_threshold=1)
    evil.add_target("../../escape.sh", b"#!/bin/sh\n")
    evil.publish()
    pulled = repo(
        tmp_path / "victim",
        "pull",
        "--from",
        str(deep),
        "--root",
        str(deep / "metadata" / "1.root.json"),
        env=clean_env(),
    )
    assert pulled.code == 1 and "leaves targets/" in pulled.err
    assert not list(tmp_path.rglob("*.escape.sh"))[1:]  # only the evil repository's own write
    assert not (tmp_path / "victim" / "repository" / "metadata" / "targets.json").exists()


def test_a_push_waits_for_another_and_then_refuses(
    tmp_path: Path, served: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    signing, www = served
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # holds the lock until the test closes its stdin (or kills it): no time limit
            # that a slow run could outlast
            "import fcntl, sys; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(www / pushing_module.PUSH_LOCK),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(pushing_module, "PUSH_LOCK_TIMEOUT", 0.3)
        with pytest.raises(RepoError, match=r"another push into .* is running"):
            pushing_module.push(signing / "repository", www)
    finally:
        holder.kill()
        holder.wait()


def test_bad_role_names_and_incomplete_sources_are_one_line(
    tmp_path: Path, served: tuple[Path, Path]
) -> None:
    signing, www = served
    (tmp_path / "k.pub").write_bytes(
        (signing / "keys" / "targets.pem").read_bytes().split(b"-----BEGIN ENCRYPTED")[0]
    )
    named = repo(signing, "delegate", "1.root", "--paths", "x/*", "--key", str(tmp_path / "k.pub"))
    assert named.code == 2 and "cannot name a delegated role" in named.err
    broken = tmp_path / "broken"
    shutil.copytree(www, broken)
    for target in (broken / "targets").iterdir():
        target.unlink()
    pulled = repo(
        tmp_path / "p",
        "pull",
        "--from",
        str(broken),
        "--root",
        str(www / "metadata" / "1.root.json"),
        env=clean_env(),
    )
    assert pulled.code == 1 and "does not serve what its metadata lists" in pulled.err
    assert "internal error" not in pulled.err and "Traceback" not in pulled.err
