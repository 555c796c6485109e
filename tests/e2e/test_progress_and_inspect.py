"""Issue 12: progress bars on a terminal (items 2, 4), `trust snapshot inspect`, and
`trust import` of the directory `trust export` writes.

Progress is checked where a person sees it: the real CLI runs with its stderr on a
pseudo-terminal (stdlib `pty`) and stdout on a pipe, and the bytes rich drew are searched
for the bar's label and its total as rich's DownloadColumn prints it ("52.4 MB").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stella_trust._internal.net.fetcher import HttpxFetcher, download_label
from stella_trust._internal.settings import BundleLimits
from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client
from tests.e2e.test_bundles import airgapped, essentials, member, rebuild, write_bundle

BIG = 50 << 20  # 52,428,800 bytes: rich prints 52.4 MB
PINS = ["rekor-key-v1", "rekor-key-v2", "big.bin"]
BAR = "━"  # rich's bar glyph
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def mb(size: int) -> str:
    """A size as rich's DownloadColumn prints it (decimal units, one decimal)."""
    return f"{size / 1e6:,.1f}"


@dataclass
class Terminal:
    code: int
    out: str  # stdout: a pipe
    screen: str  # what was drawn on the terminal (stderr), escape sequences removed


def on_terminal(argv: list[str], env: dict[str, str], timeout: float = 60) -> Terminal:
    """Run with stderr on a 150-column pseudo-terminal, stdout and stdin not terminals."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    terminal_env = {k: v for k, v in env.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    terminal_env |= {"TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40"}
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=terminal_env
    )
    os.close(slave)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            drawn += data
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return Terminal(code, out, ANSI.sub("", drawn.decode(errors="replace")))


def totals(screen: str, label: str) -> set[str]:
    """Every `completed/total MB` rich drew on the lines of the bar `label`."""
    found = set()
    for line in re.split(r"[\r\n]", screen):
        if label in line:
            found.update(re.findall(r"([\d,.]+)/([\d,.]+) MB", line))
    return {f"{done}/{total}" for done, total in found}


@dataclass
class Big:
    demo: DemoRepository
    url: str
    connected: Client
    bundle: Path
    tmp: Path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    """A repository with a 50 MiB target, served; a connected host that synced it and
    sealed it into a bundle."""
    tmp = tmp_path_factory.mktemp("big")
    demo = DemoRepository(tmp / "repository")
    demo.repo.add_target("big.bin", os.urandom(BIG))
    demo.repo.publish()
    with FaultyServer(demo.repo.path) as server:
        home = tmp / "connected"
        home.mkdir()
        connected = Client(home=home, url=server.url, root=demo.root_path)
        ok(connected.init("--no-sync"))
        connected.set_config(pinned_targets=PINS)
        ok(connected.run("sync"))
        bundle = home / "big.tar.zst"
        ok(connected.run("snapshot", "export", "--out", str(bundle)))
        yield Big(demo, server.url, connected, bundle, tmp)


def fresh_host(big: Big, name: str) -> Client:
    """A host initialised against the served repository, nothing synced yet."""
    home = big.tmp / name
    home.mkdir()
    host = Client(home=home, url=big.url, root=big.demo.root_path)
    ok(host.init("--no-sync"))
    host.set_config(pinned_targets=PINS)
    return host


def airgapped_big(big: Big, name: str) -> Client:
    host = airgapped(big.tmp, big.demo.root_path, name)
    host.set_config(pinned_targets=PINS)
    return host


# ---- progress: sync --------------------------------------------------------------------
SYNC_CHILD = """
import sys
from pathlib import Path
from stella_trust._cli.progress import sync_progress
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
settings = load_settings(Path(sys.argv[1]), {"local_cache_path": Path(sys.argv[2])})
with sync_progress(settings, quiet=sys.argv[3] == "quiet") as fetcher:
    result = sync(settings, Store.of(settings), force=True, fetcher=fetcher)
print(fetcher is not None, result.bytes_received, " ".join(result.downloaded))
"""


def test_sync_progress_draws_a_labelled_bar_with_the_download_size(big: Big) -> None:
    """What `trust sync` gets from `sync_progress` (the CLI passes it the same way)."""
    host = fresh_host(big, "sync-child")
    argv = [sys.executable, "-c", SYNC_CHILD, str(host.config), str(host.cache)]
    shown = on_terminal([*argv, "loud"], host.env)
    assert shown.code == 0, shown.screen
    assert shown.out.startswith("True ") and "big.bin" in shown.out
    assert "sync big.bin" in shown.screen, shown.screen
    assert f"{mb(BIG)}/{mb(BIG)}" in totals(shown.screen, "sync big.bin"), shown.screen
    assert "sync rekor-key-v1.pub" not in shown.screen  # a few hundred bytes: no bar
    silent = on_terminal([*argv, "quiet"], host.env)
    assert silent.code == 0 and silent.out.startswith("False ") and silent.screen == ""


def test_trust_sync_on_a_terminal_shows_the_bar(big: Big) -> None:
    host = fresh_host(big, "sync-cli")
    if "--quiet" not in ok(host.run("sync", "--help")).out:
        pytest.skip("`trust sync` does not pass progress.sync_progress's fetcher yet (client.py)")
    shown = on_terminal(host.argv("sync"), host.env)
    assert shown.code == 0, shown.screen
    assert f"{mb(BIG)}/{mb(BIG)}" in totals(shown.screen, "sync big.bin"), shown.screen
    assert shown.out.startswith("sync: updated")
    for flag in ("--quiet", "--json"):
        again = on_terminal(host.argv("sync", "--force", flag), host.env)
        assert again.code == 0 and again.screen == "", (flag, again.screen)
    assert json.loads(again.out)["ok"] is True


def test_fetcher_reports_each_download_with_its_announced_length(big: Big) -> None:
    seen: list[tuple[str, int | None, int, int]] = []

    class Record:
        def __init__(self, label: str, total: int | None) -> None:
            self.label, self.total, self.count, self.ends = label, total, 0, 0

        def advance(self, count: int) -> None:
            self.count += count

        def done(self) -> None:
            self.ends += 1
            seen.append((self.label, self.total, self.count, self.ends))

    target = next(p for p in (big.demo.repo.path / "targets").iterdir() if p.name.endswith(".big.bin"))
    with HttpxFetcher(progress=Record) as fetcher:
        body = b"".join(fetcher.fetch(f"{big.url}/targets/{target.name}"))
        assert len(body) == BIG
        assert b"".join(fetcher.fetch(target.as_uri())) == body  # file:// too
        assert fetcher.bytes_received == 2 * BIG
    assert seen == [("big.bin", BIG, BIG, 1), ("big.bin", BIG, BIG, 1)]
    assert download_label("https://x/metadata/3.snapshot.json") == "3.snapshot.json"
    assert download_label(f"https://x/targets/{'ab' * 32}.rekor%20key.pub") == "rekor key.pub"


# ---- progress: import and export ----------------------------------------------------------
def test_import_draws_each_read_of_the_bundle_with_its_size(big: Big) -> None:
    host = airgapped_big(big, "import-tty")
    size = big.bundle.stat().st_size
    shown = on_terminal(host.argv("import", str(big.bundle)), host.env)
    assert shown.code == 0, shown.screen
    assert shown.out.startswith("import: ")
    label = f"import {big.bundle.name}"
    for stage in ("metadata", "targets"):
        drawn = totals(shown.screen, f"{label} ({stage})")
        assert f"{mb(size)}/{mb(size)}" in drawn, shown.screen  # complete, at the file's size
        assert all(float(d.split("/")[0]) <= float(mb(size)) for d in drawn), drawn  # never past it
    assert f"{mb(BIG)}/{mb(BIG)}" in totals(shown.screen, f"{label} (hash big.bin)")
    assert essentials(ok(host.status()).json()) == essentials(ok(big.connected.status()).json())


def test_export_draws_the_bytes_it_writes(big: Big) -> None:
    out = big.tmp / "exports" / "again.tar.zst"
    shown = on_terminal(big.connected.argv("snapshot", "export", "--out", str(out)), big.connected.env)
    assert shown.code == 0, shown.screen
    written = totals(shown.screen, "export again.tar.zst (write)")
    assert any(d.endswith(f"/{mb(BIG)}") for d in written), shown.screen
    directory = big.tmp / "exports" / "again-dir"
    shown = on_terminal(big.connected.argv("export", "--out", str(directory)), big.connected.env)
    assert shown.code == 0 and "export again-dir (write)" in shown.screen, shown.screen


def test_quiet_json_and_pipes_get_no_bar(big: Big) -> None:
    host = airgapped_big(big, "import-quiet")
    quiet = on_terminal(host.argv("import", str(big.bundle), "--quiet"), host.env)
    assert quiet.code == 0 and quiet.screen == "" and quiet.out.startswith("import: ")
    as_json = on_terminal(host.argv("import", str(big.bundle), "--json"), host.env)
    assert as_json.code == 0 and as_json.screen == ""
    assert json.loads(as_json.out)["result"]["changed"] is False  # exactly one JSON document
    piped = ok(host.run("import", str(big.bundle)))
    assert piped.err == "" and piped.out.count("\n") == 1 and BAR not in piped.out
    exported = ok(big.connected.run("snapshot", "export", "--out", str(big.tmp / "piped.tar.zst")))
    assert exported.err == "" and exported.out.count("\n") == 1
    inspected = ok(big.connected.run("snapshot", "inspect", str(big.bundle), "--json"))
    assert inspected.err == "" and json.loads(inspected.out)["ok"] is True


# ---- snapshot inspect ----------------------------------------------------------------
def tree(root: Path) -> dict[str, Any]:
    """Everything about a directory a write would change."""
    state: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_file():
            state[key] = (
                "file",
                info.st_mode,
                info.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        else:
            state[key] = ("dir", info.st_mode, info.st_mtime_ns)
    return state


def trust_files(state: dict[str, Any]) -> dict[str, Any]:
    """The files and links of a cache, but the writer lock (it holds the last writer's pid)."""
    return {k: v for k, v in state.items() if v[0] != "dir" and k != "lock"}


@pytest.fixture
def scratch_tmp(tmp_path: Path) -> Path:
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


def test_inspect_lists_an_honest_bundle_and_leaves_the_cache_alone(
    synced: Client, tmp_path: Path, scratch_tmp: Path
) -> None:
    bundle = synced.home / "b.tar.zst"
    ok(synced.run("snapshot", "export", "--out", str(bundle), "--depth", "3"))
    before = tree(synced.cache)
    env = dict(synced.env, TMPDIR=str(scratch_tmp))
    result = ok(synced.run("snapshot", "inspect", str(bundle), "--json", env=env)).json()
    assert tree(synced.cache) == before and list(scratch_tmp.iterdir()) == []
    assert result["kind"] == "archive" and result["bytes"] == bundle.stat().st_size
    assert result["intact"] is True and result["problems"] == []
    manifest = result["manifest"]
    assert manifest["depth"] == 3 and manifest["format_version"] == 1 and manifest["created_at"]
    assert set(manifest["roles"]) == {"root", "timestamp", "snapshot", "targets"}
    assert [f["state"] for f in result["files"]] == ["ok"] * len(manifest["files"])
    assert {f["path"] for f in result["files"]} == {f["path"] for f in manifest["files"]}
    assert any(f["path"].endswith(".rekor-key-v2.pub") and len(f["sha256"]) == 64 for f in result["files"])
    verification = result["verification"]
    assert verification["status"] == "verified" and verification["changed"] is False
    assert verification["freshness"]["state"] == "fresh" and verification["versions"]["root"] == 1

    text = ok(synced.run("snapshot", "inspect", str(bundle), env=env)).out
    assert "all match the manifest" in text and "depth 3" in text
    assert "verifies from this host's trust anchor" in text and "rekor-key-v2.pub" in text
    assert tree(synced.cache) == before and list(scratch_tmp.iterdir()) == []


def test_inspect_without_an_initialised_host(synced: Client, tmp_path: Path) -> None:
    bundle = synced.home / "b.tar.zst"
    ok(synced.run("snapshot", "export", "--out", str(bundle)))
    home = tmp_path / "stranger"
    home.mkdir()
    stranger = Client(home=home, url="file:///nowhere", root=synced.root)
    result = ok(stranger.run("snapshot", "inspect", str(bundle), "--json")).json()
    assert result["intact"] is True and result["verification"]["status"] == "skipped"
    assert "not initialised" in result["verification"]["message"]
    assert not stranger.cache.exists()
    listed = ok(synced.run("snapshot", "inspect", str(bundle), "--no-verify", "--json")).json()
    assert listed["verification"]["status"] == "skipped"


def test_inspect_reports_a_tampered_bundle_in_one_line(synced: Client, tmp_path: Path) -> None:
    bundle = synced.home / "b.tar.zst"
    ok(synced.run("snapshot", "export", "--out", str(bundle)))

    def flip(members: dict[str, bytes]) -> None:
        name = next(p for p in members if p.endswith(".rekor-key-v2.pub"))
        members[name] = members[name][:-2] + b"X\n"

    bad = rebuild(bundle, tmp_path / "bad.tar.zst", flip)
    before = tree(synced.cache)
    result = synced.run("snapshot", "inspect", str(bad))
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: Manifest mismatch: targets/")
    assert "MISMATCH" in result.out and "1 do NOT match" in result.out
    document = synced.run("snapshot", "inspect", str(bad), "--json")
    assert document.code == 1
    envelope = document.envelope()
    states = {f["path"].rsplit(".", 2)[-2]: f["state"] for f in envelope["result"]["files"]}
    assert states["rekor-key-v2"] == "mismatch" and states["rekor-key-v1"] == "ok"
    assert envelope["result"]["verification"]["status"] == "skipped"
    assert tree(synced.cache) == before


def test_inspect_refuses_hostile_archives_and_foreign_bundles(
    synced: Client, tmp_path: Path, scratch_tmp: Path
) -> None:
    manifest = json.dumps(
        {
            "format": "stella-trust-bundle",
            "format_version": 1,
            "files": [{"path": "metadata/timestamp.json", "length": 0, "sha256": "0" * 64}],
        }
    ).encode()
    hostile = write_bundle(
        tmp_path / "link.tar.zst",
        [
            member("manifest.json", manifest),
            member("metadata/timestamp.json", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        ],
    )
    before = tree(synced.cache)
    env = dict(synced.env, TMPDIR=str(scratch_tmp))
    refused = synced.run("snapshot", "inspect", str(hostile), env=env)
    assert refused.code == 1 and refused.out == ""
    assert (
        refused.err.splitlines()[0] == "error: Unsafe bundle: member 'metadata/timestamp.json' is a symlink"
    )
    assert len(refused.err.splitlines()) == 2 and refused.err.splitlines()[1].startswith("hint: ")
    assert tree(synced.cache) == before and list(scratch_tmp.iterdir()) == []

    foreign = DemoRepository(tmp_path / "foreign")
    with FaultyServer(foreign.repo.path) as server:
        home = tmp_path / "foreign-host"
        home.mkdir()
        other = Client(home=home, url=server.url, root=foreign.root_path)
        ok(other.init())
        foreign_bundle = home / "foreign.tar.zst"
        ok(other.run("snapshot", "export", "--out", str(foreign_bundle)))
    refused = synced.run("snapshot", "inspect", str(foreign_bundle), "--json")
    assert refused.code == 1
    document = refused.envelope()
    assert document["result"]["intact"] is True
    assert document["result"]["verification"]["status"] == "refused"
    assert "differs from this host's trust anchor" in document["error"]["message"]
    assert tree(synced.cache) == before


# ---- import of an export directory -------------------------------------------------------
@pytest.fixture
def exported(synced: Client, tmp_path: Path) -> Path:
    out = tmp_path / "usb" / "trust-bundle"
    ok(synced.run("export", "--out", str(out)))
    return out


def copy_of(directory: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(directory, copy, symlinks=True)
    return copy


def test_import_of_an_export_directory(
    synced: Client, exported: Path, tmp_path: Path, demo: DemoRepository
) -> None:
    host = airgapped(tmp_path, demo.root_path)
    summary = ok(host.run("import", str(exported), "--verify-manifest", "--json")).json()
    assert summary["changed"] is True and summary["freshness"]["state"] == "fresh"
    status = ok(host.status()).json()
    assert essentials(status) == essentials(ok(synced.status()).json())
    assert status["source"]["kind"] == "bundle"
    assert ok(host.run("import", str(exported), "--json")).json()["changed"] is False
    inspected = ok(host.run("snapshot", "inspect", str(exported), "--json")).json()
    assert inspected["kind"] == "directory" and inspected["intact"] is True


def test_a_tampered_export_directory_changes_nothing(
    synced: Client, exported: Path, tmp_path: Path, demo: DemoRepository
) -> None:
    host = airgapped(tmp_path, demo.root_path)
    refusals: list[tuple[Path, list[str], str]] = []

    flipped = copy_of(exported, tmp_path, "flipped")
    key = next((flipped / "targets").glob("*.rekor-key-v2.pub"))
    key.write_bytes(key.read_bytes()[:-2] + b"X\n")
    refusals.append((flipped, [], "Length or hash mismatch: bundle target rekor-key-v2"))
    refusals.append((flipped, ["--verify-manifest"], "Manifest mismatch: targets/"))

    forged = copy_of(exported, tmp_path, "forged")
    timestamp = forged / "metadata" / "timestamp.json"
    document = json.loads(timestamp.read_bytes())
    document["signed"]["expires"] = "2099-01-01T00:00:00Z"  # a longer life, unsigned
    timestamp.write_text(json.dumps(document))
    manifest = json.loads((forged / "manifest.json").read_bytes())
    for entry in manifest["files"]:
        if entry["path"] == "metadata/timestamp.json":
            entry["length"] = timestamp.stat().st_size
            entry["sha256"] = hashlib.sha256(timestamp.read_bytes()).hexdigest()
    (forged / "manifest.json").write_text(json.dumps(manifest))
    refusals.append((forged, ["--verify-manifest"], "Bundle does not verify from this host's trust anchor"))

    linked = copy_of(exported, tmp_path, "linked")
    key = next((linked / "targets").glob("*.rekor-key-v1.pub"))
    key.unlink()
    key.symlink_to("/etc/passwd")
    refusals.append((linked, [], ".rekor-key-v1.pub' is a symlink"))

    extra = copy_of(exported, tmp_path, "extra")
    (extra / "targets" / "evil.sh").write_text("#!/bin/sh\n")
    refusals.append((extra, [], "'targets/evil.sh' is not in the manifest"))

    stray = copy_of(exported, tmp_path, "stray")
    (stray / "README").write_text("hello")
    refusals.append((stray, [], "outside manifest.json, metadata/, targets/"))

    moved = copy_of(exported, tmp_path, "moved")
    shutil.move(moved / "metadata", tmp_path / "elsewhere")
    (moved / "metadata").symlink_to(tmp_path / "elsewhere")
    refusals.append((moved, [], "metadata/ is a symlink"))

    bare = copy_of(exported, tmp_path, "bare")
    (bare / "manifest.json").unlink()
    refusals.append((bare, [], "not a `trust export` directory"))

    for directory, flags, phrase in refusals:  # first with nothing trusted
        result = host.run("import", str(directory), *flags)
        assert result.code == 1 and phrase in result.err, (directory.name, result.err)
        assert [line.split(":")[0] for line in result.err.splitlines()] == ["error", "hint"], result.err
    assert host.run("status").code == 3

    ok(host.run("import", str(exported)))  # then over honest trust
    before = essentials(ok(host.status()).json())
    cache_before = tree(host.cache)
    for directory, flags, phrase in refusals:
        result = host.run("import", str(directory), *flags)
        assert result.code == 1 and phrase in result.err, (directory.name, result.err)
    assert essentials(ok(host.status()).json()) == before
    assert trust_files(tree(host.cache)) == trust_files(cache_before)
    assert not (tmp_path / "evil").exists()


def test_directory_limits_apply(synced: Client, exported: Path, tmp_path: Path, demo: DemoRepository) -> None:
    host = airgapped(tmp_path, demo.root_path)
    ok(host.run("import", str(exported)))
    before = essentials(ok(host.status()).json())
    host.set_config(bundle_limits={"max_files": 3})
    result = host.run("import", str(exported))
    assert result.code == 1 and "more than 3 files" in result.err
    host.set_config(bundle_limits={"max_file_bytes": 1000})
    result = host.run("import", str(exported))
    assert result.code == 1 and "per-file limit" in result.err
    assert essentials(ok(host.status()).json()) == before


def test_directory_reader_refuses_a_fifo_without_blocking(exported: Path, tmp_path: Path) -> None:
    from stella_trust._internal.bundle.archive import ReadOptions, extract_directory
    from stella_trust._internal.bundle.layout import BundleError

    piped = copy_of(exported, tmp_path, "fifo")
    key = next((piped / "targets").glob("*.rekor-key-v1.pub"))
    key.unlink()
    os.mkfifo(key)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match="is a FIFO"):
        extract_directory(piped, dest, ReadOptions(BundleLimits(), verify_manifest=False))
    got = extract_directory(
        exported, dest, ReadOptions(BundleLimits(), verify_manifest=True, wanted=lambda n: False)
    )
    assert got.written == set() and list(dest.iterdir()) == [] and len(got.files) >= 7
