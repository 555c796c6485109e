"""A bounded fuzz of the bundle importer, in process: every mutant of an honest bundle is
refused in one line or changes nothing (fixed seed; STELLA_FUZZ_N=1000 for a long run)."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stella_trust.demo.repository import DemoRepository
from tests.e2e.test_bundles import _read_members, member
from tests.unit.test_archive_hardening import tar_bytes, zst

MiB = 1 << 20


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
