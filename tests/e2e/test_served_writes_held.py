"""Writes into directories others can write go through one descriptor-relative layer
(fs.OpenDir, issue 21, decision 18): after the top directory is opened no path is resolved
again, so a subdirectory swapped for a link to a victim directory at the worst moment
never receives a byte.

The swaps are made deterministically by a hook on the layer itself, inside the real CLI (a
subprocess that patches `OpenDir` and then runs `trust`): no sleeps, no lost races."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from stella_trust.repository.serve import RepositoryServer
from tests.conftest import Result, ok, refused
from tests.e2e.conftest import Client
from tests.e2e.operators import operator_env, publish_demo_content, repo

# argv: MODE TOP VICTIM HELD NAMES -- trust ARGS...
#   "top:N"   right after TOP is opened for the N-th time, every NAME under it is moved into
#             HELD and replaced by a link to VICTIM (a push opens its served directory twice:
#             to lock it, then to write the files it read and verified)
#   "self:N"  the same, but TOP itself is moved into HELD and replaced by a link to VICTIM
#   "subdir"  every NAME right after that subdirectory of TOP was opened
#   "staging" the first hidden (".") subdirectory of TOP right after it was opened (a staging
#             directory with a random name); NAMES unused
HOOK = r"""
import os, sys
from stella_trust._internal import fs

mode, top, victim, held, names = sys.argv[1:6]
pending = names.split(",")
opened = []
real_open = fs.OpenDir.open.__func__
real_subdir = fs.OpenDir.subdir


def swap(name):
    os.rename(os.path.join(top, name), os.path.join(held, name))
    os.symlink(victim, os.path.join(top, name))


def open_then_swap(cls, path, **options):
    handle = real_open(cls, path, **options)
    if os.fspath(path) == top:
        opened.append(path)
        kind, _, nth = mode.partition(":")
        if kind == "top" and len(opened) == int(nth):
            for name in pending:
                swap(name)
        if kind == "self" and len(opened) == int(nth):
            os.rename(top, os.path.join(held, os.path.basename(top)))
            os.symlink(victim, top)
    return handle


def subdir_then_swap(self, name, **options):
    handle = real_subdir(self, name, **options)
    if self.shown == top and name in pending and mode == "subdir":
        pending.remove(name)
        swap(name)
    if self.shown == top and name.startswith(".") and mode == "staging" and pending:
        pending.clear()
        swap(name)
    return handle


fs.OpenDir.open = classmethod(open_then_swap)
fs.OpenDir.subdir = subdir_then_swap
sys.argv = ["trust", *sys.argv[7:]]
from stella_trust._cli.app import main

main()
"""


def hooked(
    mode: str, top: Path, victim: Path, held: Path, names: str, *trust: str, env: dict[str, str] | None = None
) -> Result:
    """`trust ARGS` with the layer hooked (see HOOK)."""
    held.mkdir(exist_ok=True)
    argv = [sys.executable, "-c", HOOK, mode, str(top), str(victim), str(held), names, "--", *trust]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env or operator_env(),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def tree(directory: Path) -> dict[str, tuple[str, int]]:
    """Every entry under `directory` (links not followed): content digest (or link target) and mode."""
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        if path.name == ".stella-trust-push.lock":
            continue  # the push lock records its holder's pid
        if stat.S_ISLNK(st.st_mode):
            found[str(path.relative_to(directory))] = (f"-> {os.readlink(path)}", 0)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(directory))] = (digest, stat.S_IMODE(st.st_mode))
        else:
            found[str(path.relative_to(directory)) + "/"] = ("dir", stat.S_IMODE(st.st_mode))
    return found


def victim_keys(tmp_path: Path) -> Path:
    """The operator's keys directory: what a link planted in the served directory aims at."""
    victim = tmp_path / "operator-keys"
    victim.mkdir(mode=0o700)
    (victim / "root.pem").write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nroot\n")
    (victim / "root.pem").chmod(0o600)
    return victim


def targets_version(client: Client) -> int:
    return int(ok(client.status()).json()["metadata"]["targets"]["version"])


def served_release(tmp_path: Path) -> tuple[Path, Path]:
    """(workspace, served directory): demo content pushed, then a release signed into the
    workspace's repository/ only, waiting for its push."""
    workspace, served = tmp_path / "ws", tmp_path / "www"
    ok(repo(workspace, "init"))
    publish_demo_content(workspace, tmp_path)
    ok(repo(workspace, "push", "--to", str(served)))
    (tmp_path / "release.txt").write_bytes(b"release 2\n")
    ok(repo(workspace, "add-target", str(tmp_path / "release.txt"), "--name", "release.txt"))
    ok(repo(workspace, "publish"))
    return workspace, served


def client_of(tmp_path: Path, served: Path, url: str) -> Client:
    client = Client(home=tmp_path / "host", url=url, root=served / "metadata" / "1.root.json")
    client.home.mkdir()
    ok(client.run("init", "--tuf-url", url, "--root", str(client.root), "--pin", "rekor-key-v1"))
    return client


def test_push_refuses_subdirectories_swapped_for_links_after_the_top_was_opened(tmp_path: Path) -> None:
    """The residual the reviewers reproduced in principle: `metadata/` and `targets/` are
    checked, then swapped for links to the operator's keys directory before the first write.
    The push refuses in one line; nothing is written into the keys directory, nothing into
    the real directories; put back, the same push succeeds and a client syncs it."""
    workspace, served = served_release(tmp_path)
    victim, held = victim_keys(tmp_path), tmp_path / "held"
    with RepositoryServer(served) as server:
        client = client_of(tmp_path, served, server.url)
        published = targets_version(client)
        served_before, victim_before = tree(served), tree(victim)

        result = hooked(
            "top:2",
            served,
            victim,
            held,
            "metadata,targets",
            "repo",
            "push",
            "--to",
            str(served),
            "--path",
            str(workspace),
        )
        error, hint = refused(result, 1, "link or not a directory")
        assert (held / "metadata").is_dir() and (served / "metadata").is_symlink(), "the hook never swapped"
        assert "targets" in error and "remove it" in hint
        assert tree(victim) == victim_before  # no temp file, no rename, no mode change there
        moved = {
            name: entry
            for name, entry in served_before.items()
            if name.split("/")[0] in ("metadata", "targets")
        }
        assert tree(held) == moved  # the real directories: not a byte of the release

        for name in ("metadata", "targets"):  # the operator puts the served directory right
            (served / name).unlink()
            (held / name).rename(served / name)
        assert tree(served) == served_before
        ok(client.run("sync"))  # what was served before is whole
        assert targets_version(client) == published
        ok(repo(workspace, "push", "--to", str(served)))
        ok(client.run("sync"))
        assert targets_version(client) == published + 1
        served_targets = json.loads((served / "metadata" / "targets.json").read_text())["signed"]
        assert "release.txt" in served_targets["targets"]
    assert tree(victim) == victim_before


def test_push_into_a_directory_swapped_after_it_was_opened_writes_only_there_and_refuses(
    tmp_path: Path,
) -> None:
    """A swap one step later: `metadata/` is replaced by a link right after the push opened it.
    Every file goes into the directory the push holds (never through the link), and the push
    refuses because its files are no longer where clients look."""
    workspace, served = served_release(tmp_path)
    victim, held = victim_keys(tmp_path), tmp_path / "held"
    with RepositoryServer(served) as server:
        client = client_of(tmp_path, served, server.url)
        published = targets_version(client)
        victim_before = tree(victim)

        result = hooked(
            "subdir",
            served,
            victim,
            held,
            "metadata",
            "repo",
            "push",
            "--to",
            str(served),
            "--path",
            str(workspace),
        )
        error, _hint = refused(result, 1, "replaced while the push wrote into it")
        assert (served / "metadata").is_symlink() and "metadata" in error
        assert tree(victim) == victim_before
        timestamp = json.loads((held / "metadata" / "timestamp.json").read_text())["signed"]
        assert timestamp["version"] > 1  # the new files are in the directory the push held

        (served / "metadata").unlink()
        (held / "metadata").rename(served / "metadata")
        ok(repo(workspace, "push", "--to", str(served)))  # the state is whole: nothing to redo
        ok(client.run("sync"))
        assert targets_version(client) == published + 1
    assert tree(victim) == victim_before


def test_push_refuses_a_served_directory_swapped_whole_after_it_was_locked(tmp_path: Path) -> None:
    """Whoever can write the served directory's parent moves it away right after the push took
    its lock and leaves a link to the operator's keys directory in its place: the push reads
    nothing served there, so it would write every file; it refuses, because the directory it
    would write into is not the one whose lock it holds."""
    workspace, served = served_release(tmp_path)
    victim, held = victim_keys(tmp_path), tmp_path / "held"
    with RepositoryServer(served) as server:
        client = client_of(tmp_path, served, server.url)
        published = targets_version(client)
        served_before, victim_before = tree(served), tree(victim)

        result = hooked(
            "self:1", served, victim, held, "", "repo", "push", "--to", str(served), "--path", str(workspace)
        )
        refused(result, 1, "no longer the directory this push locked")
        assert served.is_symlink(), "the hook never swapped"
        assert tree(victim) == victim_before
        assert tree(held / served.name) == served_before

        served.unlink()
        (held / served.name).rename(served)
        ok(client.run("sync"))
        assert targets_version(client) == published
        ok(repo(workspace, "push", "--to", str(served)))
        ok(client.run("sync"))
        assert targets_version(client) == published + 1
    assert tree(victim) == victim_before


def test_export_keys_refuses_a_keys_directory_swapped_for_a_link_after_the_drive_was_opened(
    tmp_path: Path,
) -> None:
    """`repo export-keys DRIVE`: the drive's preparer swaps `keys/` for a link to a directory of
    their choosing right after the drive is opened; no key lands there, and the export works
    once the link is gone."""
    workspace = tmp_path / "ws"
    ok(repo(workspace, "init"))
    drive, held = tmp_path / "drive", tmp_path / "held"
    (drive / "keys").mkdir(parents=True)
    preparers = tmp_path / "preparers-dir"
    preparers.mkdir()
    os.chmod(preparers, 0o777)

    result = hooked(
        "top:1",
        drive,
        preparers,
        held,
        "keys",
        "repo",
        "export-keys",
        str(drive),
        "--roles",
        "timestamp",
        "--path",
        str(workspace),
    )
    refused(result, 1, "keys", "link or not a directory")
    assert (drive / "keys").is_symlink() and (held / "keys").is_dir(), "the hook never swapped"
    assert os.listdir(preparers) == [] and os.listdir(held / "keys") == []

    (drive / "keys").unlink()
    ok(repo(workspace, "export-keys", str(drive), "--roles", "timestamp"))
    exported = drive / "keys" / "timestamp.pem"
    assert exported.read_bytes() == (workspace / "keys" / "timestamp.pem").read_bytes()
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600 and os.listdir(preparers) == []


def test_directory_export_refuses_a_staging_directory_swapped_for_a_link_while_written(
    synced: Client, tmp_path: Path
) -> None:
    """`trust export --out DRIVE/trust`: whoever can write the drive swaps the export's staging
    directory for a link to a directory of their choosing right after it was made. The files
    go only into the directory the export holds, the link is never renamed into OUT, and the
    export refuses in one line; the next export works and a host initialises from it."""
    drive, held = tmp_path / "drive", tmp_path / "held"
    drive.mkdir()
    os.chmod(drive, 0o777)  # a drive anyone could write
    victim = tmp_path / "theirs"
    victim.mkdir()
    out = drive / "trust"
    cli = ["--config", str(synced.config), "--cache-dir", str(synced.cache)]

    result = hooked("staging", drive, victim, held, "-", *cli, "export", "--out", str(out), env=synced.env)
    refused(result, 2, "moved or replaced while the export was written")
    assert os.listdir(victim) == []  # not a byte through the link
    (staging,) = held.iterdir()
    assert staging.name.startswith(".trust.") and (staging / "manifest.json").is_file()  # written there
    assert os.listdir(drive) == []  # no OUT, no link, no staging left behind

    summary = ok(synced.run("export", "--out", str(out), "--json")).json()
    assert (out / "manifest.json").is_file() and summary["files"] >= 8 and not out.is_symlink()
    host = Client(home=tmp_path / "fromdrive", url=out.as_uri(), root=synced.root, env=synced.env)
    host.home.mkdir()
    ok(
        host.run(
            "init", "--tuf-url", host.url, "--offline", "--root", str(synced.root), "--pin", "rekor-key-v1"
        )
    )
    assert ok(host.status()).json()["freshness"]["state"] == "fresh"
    assert os.listdir(victim) == []
