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
from tests.conftest import Client, FaultyServer, Result, ok
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


# ---- a bounded fuzz, in process --------------------------------------------------------------
FUZZ_N = int(os.environ.get("STELLA_FUZZ_N", "60"))
FUZZ_SEED = int(os.environ.get("STELLA_FUZZ_SEED", "20260125"))
TRICKS = [
    "/etc/evil", "../evil", "metadata/../../evil", "targets/../../evil", "metadata/x/y",
    "targets/" + "n" * 300, "targets/a\\b", "evil", "targets/./x", "targets//x", "targets/" + "é" * 200,
    "manifest.json", "metadata", "targets/a/../../../x", "targets/con\x7f",
]  # fmt: skip
LINKS = [
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
]


class Honest:
    """The honest bundle in the forms the mutators start from."""

    def __init__(self, path: Path) -> None:
        self.compressed = path.read_bytes()
        self.members = _read_members(path)
        self.tar = tar_bytes([member(n, d) for n, d in self.members.items()])

    def build(self, members: list[tuple[str, bytes]]) -> bytes:
        return zst(tar_bytes([member(n, d) for n, d in members]))


def _flip(data: bytes, rng: Any) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _some(h: Honest, rng: Any) -> str:
    return str(rng.choice([n for n in h.members if n != "manifest.json"]))


def _link(h: Honest, rng: Any) -> bytes:
    victim, kind = _some(h, rng), rng.choice(LINKS)
    target = rng.choice(["/etc/passwd", "../../x", "manifest.json", victim])
    items = [member(n, kind=kind, link=target) if n == victim else member(n, d) for n, d in h.members.items()]
    return zst(tar_bytes(items))


def _huge_size(h: Honest, rng: Any) -> bytes:
    victim = _some(h, rng)
    items = [member(n, d) for n, d in h.members.items()]
    for index, (info, _data) in enumerate(items):
        if info.name == victim:
            info.size = rng.choice([8**11 - 1, 10**12, 1 << 40, info.size + 1])
            items[index] = (info, None)
    return zst(tar_bytes(items))


def _header_bomb(h: Honest, rng: Any) -> bytes:
    kind = rng.choice([tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XGLTYPE])
    size = rng.choice([512, 65_537, 1 << 20, 1 << 30, 8**11 - 1])
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = kind, size
    padding = bytes(min(-(-size // 512) * 512, rng.randrange(0, 256 << 10)))
    return zst(info.tobuf(format=tarfile.USTAR_FORMAT) + padding + h.tar)


def _manifest(h: Honest, rng: Any) -> bytes:
    manifest = json.loads(h.members["manifest.json"])
    choice = rng.randrange(6)
    if choice == 0:
        data = b'{"x": ' + b"[" * rng.randint(100, 9000) + b"]"
    elif choice == 1:
        manifest["files"].pop(rng.randrange(len(manifest["files"])))
    elif choice == 2:
        manifest["files"][rng.randrange(len(manifest["files"]))]["length"] = rng.choice(
            [-1, 0, 1 << 40, "1", None]
        )
    elif choice == 3:
        manifest["files"][rng.randrange(len(manifest["files"]))]["path"] = rng.choice(TRICKS)
    elif choice == 4:
        manifest[rng.choice(["format", "format_version", "files"])] = rng.choice([2, "x", None, {}, []])
    else:
        manifest["x"] = [[]] * rng.randint(1, 100_000)
    if choice != 0:
        data = json.dumps(manifest).encode()
    return h.build([("manifest.json", data), *[(n, d) for n, d in h.members.items() if n != "manifest.json"]])


def _trailing(h: Honest, rng: Any) -> bytes:
    junk: bytes = rng.randbytes(rng.randint(1, 4096))
    variants = [
        zst(h.tar + junk),
        h.compressed + junk,
        h.compressed + zst(h.tar),
        h.compressed + b"\x50\x2a\x4d\x18" + len(junk).to_bytes(4, "little") + junk,
        zst(h.tar + bytes(tarfile.RECORDSIZE)),
    ]
    picked: bytes = variants[rng.randrange(len(variants))]
    return picked


def _reorder(h: Honest, rng: Any) -> bytes:
    items = list(h.members.items())
    rest = items[1:]
    rng.shuffle(rest)
    return h.build([items[0], *rest] if rng.random() < 0.7 else [*rest, items[0]])


MUTATORS: dict[str, Callable[[Honest, Any], bytes]] = {
    "flip": lambda h, rng: _flip(h.compressed, rng),
    "truncate": lambda h, rng: h.compressed[: rng.randrange(len(h.compressed))],
    "tar-flip": lambda h, rng: zst(_flip(h.tar, rng)),
    "tar-truncate": lambda h, rng: zst(h.tar[: rng.randrange(len(h.tar))]),
    "path-trick": lambda h, rng: h.build([*h.members.items(), (rng.choice(TRICKS), b"x")]),
    "link": _link,
    "huge-size": _huge_size,
    "header-bomb": _header_bomb,
    "manifest": _manifest,
    "trailing": _trailing,
    "reorder": _reorder,
    "drop": lambda h, rng: h.build([(n, d) for n, d in h.members.items() if n != _some(h, rng)]),
    "duplicate": lambda h, rng: h.build([*h.members.items(), (lambda n: (n, h.members[n]))(_some(h, rng))]),
}


def test_fuzzed_bundles_are_refused_in_one_line_or_change_nothing(tmp_path: Path) -> None:
    """FUZZ_N mutants of an honest bundle (fixed seed; STELLA_FUZZ_N=1000 for a long run):
    each is refused with a one-line StellaError, or accepted with identical trust."""
    import random
    import time

    from stella_trust._internal.bundle.export import export_archive
    from stella_trust._internal.bundle.importer import import_bundle
    from stella_trust._internal.reader import verified_current
    from stella_trust._internal.settings import load_settings
    from stella_trust._internal.store import Store
    from stella_trust._internal.sync import sync
    from stella_trust.errors import StellaError
    from tests.unit.simulator import BASE_URL, RepositoryFetcher

    demo = DemoRepository(tmp_path / "repository")
    overrides: dict[str, Any] = {"tuf_url": BASE_URL, "pinned_targets": ["rekor-key-v1", "rekor-key-v2"]}
    connected = load_settings(tmp_path / "absent.yaml", {**overrides, "local_cache_path": tmp_path / "c"})
    connected_store = Store.of(connected)
    connected_store.write_anchor(demo.repo.root_bytes(1))
    sync(connected, connected_store, fetcher=RepositoryFetcher(demo.repo))
    honest = tmp_path / "honest.tar.zst"
    export_archive(connected, connected_store, honest)
    limits = {"max_uncompressed_bytes": 64 * MiB, "max_file_bytes": 16 * MiB, "max_files": 100}
    settings = load_settings(
        tmp_path / "absent.yaml",
        {
            "tuf_url": (tmp_path / "nowhere").as_uri(),
            "pinned_targets": ["rekor-key-v2"],  # rekor-key-v1 is in the bundle, never selected
            "offline_mode": True,
            "local_cache_path": tmp_path / "airgap",
            "bundle_limits": limits,
        },
    )
    store = Store.of(settings)
    store.write_anchor(demo.repo.root_bytes(1))
    import_bundle(settings, store, honest)

    def fingerprint() -> Any:
        verified = verified_current(store)
        targets = sorted((n, i.length, sorted(i.hashes.items())) for n, i in verified.target_info.items())
        return verified.generation.path, verified.metadata.versions, targets

    before = fingerprint()
    h = Honest(honest)
    rng = random.Random(FUZZ_SEED)
    counts: dict[str, dict[str, int]] = {}
    mutant = tmp_path / "mutant.tar.zst"
    started = time.monotonic()
    for case in range(FUZZ_N):
        kind = rng.choice(sorted(MUTATORS))
        mutant.write_bytes(MUTATORS[kind](h, rng))
        verify = rng.random() < 0.5
        try:
            summary = import_bundle(settings, store, mutant, verify_manifest=verify)
        except StellaError as exc:
            where = f"case {case} ({kind}, seed {FUZZ_SEED})"
            assert exc.message and "\n" not in exc.message and exc.hint, f"{where}: {exc.message!r}"
            assert exc.exit_code == 1, f"{where}: exit {exc.exit_code}: {exc.message}"
            outcome = "refused"
        except Exception as exc:  # anything else would be a traceback for the user
            pytest.fail(f"case {case} ({kind}, seed {FUZZ_SEED}): {type(exc).__name__}: {exc}")
        else:
            assert not summary.changed, f"case {case} ({kind}) changed the trust"
            outcome = "accepted"
        assert fingerprint() == before, f"case {case} ({kind}): the trust changed"
        counts.setdefault(kind, {}).setdefault(outcome, 0)
        counts[kind][outcome] += 1
    leftovers = [p.name for p in store.generations_dir.iterdir() if p.name.startswith(".work")]
    assert leftovers == []
    elapsed = time.monotonic() - started
    totals = {o: sum(c.get(o, 0) for c in counts.values()) for o in ("refused", "accepted")}
    print(f"\nfuzz: N={FUZZ_N} seed={FUZZ_SEED} {elapsed:.1f}s {totals} {json.dumps(counts, sort_keys=True)}")
