"""Bundle faults from the attack review, through the real CLI, and a bounded fuzz in process.

After every refusal the trust the host imported before is intact (`trust status --json`),
and the refusal is one `error:` line and one `hint:` line with exit 1, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zstandard

from stella_trust._internal.bundle.layout import LEGACY_EMPTY_FRAME
from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, Result, ok
from tests.e2e.conftest import Client
from tests.e2e.test_bundles import _manifest_for, _read_members, airgapped, essentials, member
from tests.unit.test_archive_hardening import bomb, tar_bytes, zst

MiB = 1 << 20


class _Zeros(io.RawIOBase):
    """`size` zero bytes, streamed: the test never holds the giant member."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def refused(result: Result, words: str) -> None:
    assert result.code == 1, result.err
    assert "Traceback" not in result.err + result.out
    lines = result.err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.err
    assert words.lower() in lines[0].lower(), result.err


def run_limited(host: Client, fsize: int, *args: str) -> Result:
    """The CLI with RLIMIT_FSIZE: a write past `fsize` bytes fails with EFBIG (SIGXFSZ
    ignored), like a full disk, without needing a filesystem of that size."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    done = subprocess.run(
        host.argv(*args),
        env=host.env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """A small tmpfs at `path` when this host allows mounting (root in CI containers)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False
    )
    try:
        yield mounted.returncode == 0
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


# ---- one honest bundle, one air-gapped host that imported it -------------------------------
@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("faults")
    demo = DemoRepository(tmp / "repository")
    with FaultyServer(demo.repo.path) as server:
        home = tmp / "connected"
        home.mkdir()
        connected = Client(home=home, url=server.url, root=demo.root_path)
        ok(connected.init())
        honest = home / "honest.tar.zst"
        ok(connected.run("snapshot", "export", "--out", str(honest)))
    host = airgapped(tmp, demo.root_path)
    ok(host.run("import", str(honest)))
    before = essentials(ok(host.status()).json())
    return {
        "tmp": tmp,
        "demo": demo,
        "honest": honest,
        "host": host,
        "before": before,
        "connected": connected,
    }


def _rebuilt(honest: Path, change: Callable[[dict[str, bytes]], None], manifest: bool = True) -> bytes:
    members = _read_members(honest)
    change(members)
    if manifest:
        members["manifest.json"] = _manifest_for({p: d for p, d in members.items() if p != "manifest.json"})
    return tar_bytes([member(name, data) for name, data in members.items()])


def _deep(depth: int) -> bytes:
    return b'{"signed": ' + b"[" * depth + b"]" * depth + b"}"


def _cases(honest: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    tar = _rebuilt(honest, lambda m: None)
    deep_manifest = json.loads(_read_members(honest)["manifest.json"])
    deep_manifest["x"] = "DEEP"
    deep_bytes = json.dumps(deep_manifest).encode().replace(b'"DEEP"', b"[" * 5000 + b"]" * 5000)

    def swap(suffix: str, data: bytes) -> Callable[[dict[str, bytes]], None]:
        return lambda m: m.update(
            {next(p for p in m if p.startswith("metadata/") and p.endswith(suffix)): data}
        )

    raw: dict[str, tuple[bytes, str]] = {
        "pax-header-bomb": (b"", "extended header"),
        "300-char-name": (
            _rebuilt(honest, lambda m: m.update({"targets/" + "n" * 300: b"x"})),
            "member name",
        ),
        "file-then-directory": (
            _rebuilt(honest, lambda m: m.update({"targets/a": b"x", "targets/a/b": b"y"})),
            "both as a file and as a directory",
        ),
        "metadata-as-directory": (
            _rebuilt(honest, lambda m: m.update({"metadata/timestamp.json/x": b"y"})),
            "nests below metadata/",
        ),
        "deep-manifest": (
            tar_bytes(
                [
                    member(n, deep_bytes if n == "manifest.json" else d)
                    for n, d in _read_members(honest).items()
                ]
            ),
            "nested too deeply",
        ),
        "deep-timestamp": (_rebuilt(honest, swap("timestamp.json", _deep(8000))), "nests too deeply"),
        "deep-targets": (_rebuilt(honest, swap(".targets.json", _deep(100_000))), "targets"),
        "oversized-timestamp": (
            _rebuilt(honest, swap("timestamp.json", b" " * 100_000)),
            "over the 16384-byte per-file limit",
        ),
        "junk-in-tar-padding": (tar[:-100] + b"smuggled" + bytes(92), "data after the end of the archive"),
    }
    built: dict[str, tuple[Path, str]] = {}
    for name, (data, phrase) in raw.items():
        path = tmp / f"{name}.tar.zst"
        if name == "pax-header-bomb":
            bomb(path, tarfile.XHDTYPE, 256 * MiB)
        else:
            path.write_bytes(zst(data))
        built[name] = (path, phrase)
    second = tmp / "second-frame.tar.zst"
    second.write_bytes(honest.read_bytes() + zst(tar))
    built["second-zstd-frame"] = (second, "a second zstd frame")
    return built


FAULTS = [
    "pax-header-bomb", "300-char-name", "file-then-directory", "metadata-as-directory", "deep-manifest",
    "deep-timestamp", "deep-targets", "oversized-timestamp", "junk-in-tar-padding", "second-zstd-frame",
]  # fmt: skip


@pytest.fixture(scope="module")
def built(faults: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    cases = faults["tmp"] / "cases"
    cases.mkdir()
    made = _cases(faults["honest"], cases)
    assert sorted(made) == sorted(FAULTS)
    return made


@pytest.mark.parametrize("name", FAULTS)
def test_fault_is_one_line_and_changes_nothing(name: str, faults: dict[str, Any], built: Any) -> None:
    host: Client = faults["host"]
    path, phrase = built[name]
    refused(host.run("import", str(path)), phrase)
    assert essentials(ok(host.status()).json()) == faults["before"]
    assert [p.name for p in (host.cache / "generations").iterdir() if p.name.startswith(".")] == []


def test_legacy_two_frame_bundle_still_imports(faults: dict[str, Any]) -> None:
    """Bundles from 0.1.0 end with an empty second frame: the one second frame accepted."""
    legacy = faults["tmp"] / "legacy.tar.zst"
    legacy.write_bytes(faults["honest"].read_bytes() + LEGACY_EMPTY_FRAME)
    assert ok(faults["host"].run("import", str(legacy), "--json")).json()["changed"] is False


def test_unselected_giant_member_is_never_written(faults: dict[str, Any]) -> None:
    """A small bundle listing 256 MiB of zeros no one selected: read and counted, never
    written (the import runs with every file capped at 16 MiB: writing it would fail)."""
    host: Client = faults["host"]
    path = faults["tmp"] / "giant.tar.zst"
    members = _read_members(faults["honest"])
    members.pop("manifest.json")
    files = {**members, "targets/giant.bin": b""}
    manifest = json.loads(_manifest_for(files))
    manifest["files"][-1]["length"] = 256 * MiB
    members = {"manifest.json": json.dumps(manifest).encode(), **members}
    with (
        path.open("wb") as out,
        zstandard.ZstdCompressor(level=3).stream_writer(out) as writer,
        tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for info, data in [member(p, d) for p, d in members.items()]:
            tar.addfile(info, io.BytesIO(data or b""))
        giant = tarfile.TarInfo("targets/giant.bin")
        giant.size = 256 * MiB
        tar.addfile(giant, _Zeros(giant.size))
    assert path.stat().st_size < 256 << 10
    result = run_limited(host, 16 * MiB, "import", str(path), "--json")
    assert result.code == 0, result.err
    assert result.json()["changed"] is False
    assert essentials(ok(host.status()).json()) == faults["before"]


# ---- the filesystem fails under an import or an export ----------------------------------
def test_import_onto_a_full_filesystem(faults: dict[str, Any], tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=4m") as mounted:
        if not mounted:
            pytest.skip("cannot mount tmpfs here (test_import_with_a_file_size_limit simulates it)")
        host = airgapped(tmp_path / "small", faults["demo"].root_path, "host")
        ok(host.run("import", str(faults["honest"])))
        before = essentials(ok(host.status()).json())
        filler = tmp_path / "small" / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(bytes(64 << 10))
                    out.flush()
            except OSError:
                pass
        refused(
            host.run("import", str(faults["honest"])), "Cannot import the bundle: No space left on device"
        )
        assert essentials(ok(host.status()).json()) == before
        filler.unlink()
        assert [p.name for p in (host.cache / "generations").iterdir() if p.name.startswith(".")] == []


def test_import_with_a_file_size_limit(faults: dict[str, Any], tmp_path: Path) -> None:
    host = airgapped(tmp_path, faults["demo"].root_path)
    ok(host.run("import", str(faults["honest"])))
    before = essentials(ok(host.status()).json())
    refused(
        run_limited(host, 600, "import", str(faults["honest"])), "Cannot import the bundle: File too large"
    )
    assert essentials(ok(host.status()).json()) == before


def test_export_to_a_full_or_read_only_filesystem(faults: dict[str, Any], tmp_path: Path) -> None:
    connected: Client = faults["connected"]
    with tmpfs(tmp_path / "full", "size=4k") as mounted:
        if mounted:
            (tmp_path / "full" / "filler").write_bytes(bytes(4096))  # the one page: now full
            out = tmp_path / "full" / "b.tar.zst"
            refused(
                connected.run("snapshot", "export", "--out", str(out)),
                "Cannot write the bundle: No space left",
            )
            assert os.listdir(tmp_path / "full") == ["filler"]
    with tmpfs(tmp_path / "ro", "size=1m,ro") as mounted:
        if mounted:  # (fs.replaced_atomically's cleanup re-raises EROFS: the CLI's OS line)
            out = tmp_path / "ro" / "b.tar.zst"
            refused(connected.run("snapshot", "export", "--out", str(out)), "Read-only file system")
    out = tmp_path / "limited" / "b.tar.zst"
    refused(
        run_limited(connected, 100, "snapshot", "export", "--out", str(out)),
        "Cannot write the bundle: File too",
    )
    assert not out.exists() and os.listdir(out.parent) == []
    assert ok(connected.status()).json()["freshness"]["state"] == "fresh"
