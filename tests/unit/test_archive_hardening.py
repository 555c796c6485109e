"""The hostile-input reader against the attack review's archives, in process (decision 5).

Each case fails on the reader before the hardening: header bombs read whole (RSS in the
gigabytes), names the filesystem refuses with a traceback, unselected members written,
data after the archive's end accepted.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from stella_trust._internal.bundle.archive import ReadOptions, extract_archive
from stella_trust._internal.bundle.layout import LEGACY_EMPTY_FRAME, BundleError
from stella_trust._internal.settings import BundleLimits
from tests.e2e.test_bundles import _manifest_for, member

MiB = 1 << 20
RSS_LIMIT_KB = 64 * 1024  # the whole process, interpreter and imports included
# VmHWM, not getrusage: ru_maxrss survives exec, so a child would report pytest's own size.
RSS_SCRIPT = """
import re, sys
from pathlib import Path
from stella_trust._internal.bundle.archive import ReadOptions, extract_archive
from stella_trust._internal.bundle.layout import BundleError
from stella_trust._internal.settings import BundleLimits
try:
    extract_archive(Path(sys.argv[1]), Path(sys.argv[2]), ReadOptions(BundleLimits(), verify_manifest=False))
    print("accepted")
except BundleError as exc:
    print("refused:", exc.message)
print(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
"""


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def honest_tar(extra: dict[str, bytes] | None = None) -> bytes:
    files = {"metadata/timestamp.json": b"{}", "targets/key.pub": b"key", **(extra or {})}
    return tar_bytes(
        [member("manifest.json", _manifest_for(files)), *[member(p, d) for p, d in files.items()]]
    )


def header(kind: bytes, size: int, name: str = "././@LongLink") -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def bomb(path: Path, kind: bytes, declared: int) -> Path:
    """A tiny bundle whose first header declares `declared` bytes of extended header, all
    zeros (they compress to almost nothing), streamed so the test never holds them."""
    with path.open("wb") as out, zstandard.ZstdCompressor(level=1).stream_writer(out) as writer:
        writer.write(header(kind, declared))
        for _ in range(declared // MiB):
            writer.write(bytes(MiB))
        writer.write(bytes(2048))
    return path


def extract(path: Path, dest: Path, **limits: int) -> None:
    extract_archive(path, dest, ReadOptions(BundleLimits(**limits), verify_manifest=False))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- finding 1: header bombs ---------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures VmHWM (Linux)")
@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-longname"])
def test_header_bomb_peak_rss_stays_small(tmp_path: Path, kind: bytes) -> None:
    """256 MiB of declared extended header: the old reader held it whole (twice) before any
    limit; now the 512-byte header alone is refused. Measured in a fresh process."""
    path = bomb(tmp_path / "bomb.tar.zst", kind, 256 * MiB)
    assert path.stat().st_size < 64 << 10
    (tmp_path / "dest").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(path), str(tmp_path / "dest")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    verdict, rss_kb = done.stdout.strip().splitlines()
    assert verdict.startswith("refused:") and "extended header" in verdict, verdict
    assert int(rss_kb) < RSS_LIMIT_KB, f"peak RSS {int(rss_kb) // 1024} MiB"


def test_extended_header_counts_against_the_uncompressed_limit(tmp_path: Path) -> None:
    """Under the header limit, yet over the uncompressed limit: counted as tarfile reads it."""
    path = write(tmp_path / "b.tar.zst", zst(header(tarfile.XHDTYPE, 60 << 10) + bytes(70 << 10)))
    with pytest.raises(BundleError, match="expands beyond the 32768-byte limit"):
        extract(path, tmp_path, max_uncompressed_bytes=32 << 10)


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        (tarfile.XGLTYPE, "is not accepted"),
        (tarfile.GNUTYPE_SPARSE, "is not accepted"),
        (tarfile.SOLARIS_XHDTYPE, "is not accepted"),
    ],
    ids=["pax-global", "gnu-sparse", "solaris-pax"],
)
def test_unusual_tar_headers_are_refused(tmp_path: Path, kind: bytes, phrase: str) -> None:
    path = write(tmp_path / "b.tar.zst", zst(header(kind, 512) + bytes(512 + 1024)))
    with pytest.raises(BundleError, match=phrase):
        extract(path, tmp_path)


def test_chained_extended_headers_are_refused(tmp_path: Path) -> None:
    """tarfile recurses once per extended header: a long chain was a RecursionError."""
    record = b"20 comment=aaaaaaaa\n"
    chain = b"".join(header(tarfile.XHDTYPE, len(record)) + record.ljust(512, b"\0") for _ in range(2000))
    path = write(tmp_path / "b.tar.zst", zst(chain + bytes(1024)))
    with pytest.raises(BundleError, match="chain of tar extended headers"):
        extract(path, tmp_path)


def test_pax_sparse_map_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("targets/s")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "targets/s"}
    path = write(tmp_path / "b.tar.zst", zst(tar_bytes([(info, None)])))
    with pytest.raises(BundleError, match="sparse"):
        extract(path, tmp_path)


def test_damaged_header_after_the_first_member_is_refused(tmp_path: Path) -> None:
    """tarfile takes a bad checksum after the first member for the end of the archive."""
    data = bytearray(honest_tar())
    data[1024 + 148] ^= 0x07  # the second header's checksum field
    with pytest.raises(BundleError, match="Corrupt or truncated bundle"):
        extract(write(tmp_path / "b.tar.zst", zst(bytes(data))), tmp_path)


# ---- finding 2: names and JSON that used to raise OSError or RecursionError ---------------
@pytest.mark.parametrize(
    ("files", "phrase"),
    [
        ({"metadata/" + "a" * 300: b"x"}, "too long"),
        ({"targets/a": b"x", "targets/a/b": b"y"}, "both as a file and as a directory"),
        ({"metadata/timestamp.json": b"{}", "metadata/timestamp.json/x": b"y"}, "nests below metadata/"),
        ({"targets/\x00x": b"x"}, "odd path"),
    ],
    ids=["300-char-name", "file-then-directory", "metadata-as-directory", "nul"],
)
def test_names_the_filesystem_would_refuse(tmp_path: Path, files: dict[str, bytes], phrase: str) -> None:
    data = tar_bytes(
        [member("manifest.json", _manifest_for(files)), *[member(p, d) for p, d in files.items()]]
    )
    (tmp_path / "dest").mkdir()
    with pytest.raises(BundleError, match=phrase):
        extract(write(tmp_path / "b.tar.zst", zst(data)), tmp_path / "dest")
    assert list((tmp_path / "dest").rglob("*")) in ([], [tmp_path / "dest" / "targets"])


def test_deep_manifest_is_refused(tmp_path: Path) -> None:
    deep = b'{"format": "stella-trust-bundle", "format_version": 1, "files": [], "x": ' + b"[" * 100_000
    data = tar_bytes([member("manifest.json", deep + b"]" * 100_000 + b"}")])
    with pytest.raises(BundleError, match="Bundle manifest"):
        extract(write(tmp_path / "b.tar.zst", zst(data)), tmp_path)


# ---- finding 3: members nobody selected are not written ----------------------------------
def test_unwanted_member_is_skipped_but_counted(tmp_path: Path) -> None:
    data = honest_tar({"targets/zeros.bin": bytes(32 * MiB)})
    path = write(tmp_path / "b.tar.zst", zst(data))
    dest = tmp_path / "dest"
    dest.mkdir()
    got = extract_archive(
        path,
        dest,
        ReadOptions(BundleLimits(), verify_manifest=True, wanted=lambda n: n.startswith("metadata/")),
    )
    assert got.written == {"metadata/timestamp.json"}
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["timestamp.json"]
    assert got.files["targets/zeros.bin"][0] == 32 * MiB and got.total_bytes > 32 * MiB
    with pytest.raises(BundleError, match="expands beyond"):
        extract_archive(
            path,
            tmp_path / "x",
            ReadOptions(
                BundleLimits(max_uncompressed_bytes=16 * MiB), verify_manifest=False, wanted=lambda n: False
            ),
        )


# ---- finding 4: nothing after the archive ---------------------------------------------------
def test_honest_archive_and_legacy_empty_frame_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = zst(honest_tar())
    extract(write(tmp_path / "one.tar.zst", data), tmp_path / "a")
    extract(write(tmp_path / "legacy.tar.zst", data + LEGACY_EMPTY_FRAME), tmp_path / "b")
    for out in (tmp_path / "a", tmp_path / "b"):
        assert (out / "targets" / "key.pub").read_bytes() == b"key"
        assert (out / "metadata" / "timestamp.json").read_bytes() == b"{}"


@pytest.mark.parametrize(
    "case",
    [
        "junk-in-padding",
        "zeros-past-record",
        "second-frame-tar",
        "skippable-frame",
        "raw-junk",
        "no-end-marker",
    ],
)
def test_data_after_the_archive_is_refused(tmp_path: Path, case: str) -> None:
    tar = honest_tar()
    assert len(tar) % tarfile.RECORDSIZE == 0
    data = {
        "junk-in-padding": lambda: zst(tar[:-100] + b"smuggled" + bytes(92)),
        "zeros-past-record": lambda: zst(tar + bytes(tarfile.RECORDSIZE)),
        "second-frame-tar": lambda: zst(tar) + zst(honest_tar()),
        "skippable-frame": lambda: zst(tar) + b"\x50\x2a\x4d\x18" + (8).to_bytes(4, "little") + b"smuggled",
        "raw-junk": lambda: zst(tar) + b"x",
        "no-end-marker": lambda: zst(tar[: tar.rindex(b"key") + 512]),
    }[case]()
    with pytest.raises(BundleError, match=r"after the end of the archive|Corrupt or truncated"):
        extract(write(tmp_path / "b.tar.zst", data), tmp_path)


def test_truncated_frame_is_refused(tmp_path: Path) -> None:
    data = zst(honest_tar())
    with pytest.raises(BundleError, match="Corrupt or truncated bundle"):
        extract(write(tmp_path / "b.tar.zst", data[:-3]), tmp_path)


def test_manifest_value_flood_is_refused(tmp_path: Path) -> None:
    """A dense manifest (a million tiny values) would take far more memory than its bytes."""
    flood = {"format": "stella-trust-bundle", "format_version": 1, "files": [], "x": [[]] * 200_000}
    data = tar_bytes([member("manifest.json", json.dumps(flood).encode())])
    with pytest.raises(BundleError, match="implausibly"):
        extract(write(tmp_path / "b.tar.zst", zst(data)), tmp_path)


# ---- the import's metadata pass stops once the metadata is read (issue 13) -------------------
def test_a_pass_that_stops_when_its_members_are_read_says_it_did_not_check_the_rest(tmp_path: Path) -> None:
    """The metadata pass of an import need not decompress the targets behind the metadata:
    it stops, says `whole` is False (nothing after was read or checked), and the import's
    targets pass reads and checks the whole archive before anything is committed."""
    smuggled = zst(honest_tar({"targets/noise.bin": os.urandom(8 * MiB)})) + b"x"  # junk after the frame
    path = write(tmp_path / "b.tar.zst", smuggled)
    dest = tmp_path / "dest"
    dest.mkdir()
    got = extract_archive(
        path,
        dest,
        ReadOptions(
            BundleLimits(),
            verify_manifest=False,
            wanted=lambda n: n.startswith("metadata/"),
            stop_when_read=True,
        ),
    )
    assert not got.whole and got.written == {"metadata/timestamp.json"}
    assert set(got.files) == {"metadata/timestamp.json"}  # the targets were not reached
    # Read to its end, the same archive is refused, and --verify-manifest never stops early.
    with pytest.raises(BundleError, match="after the end of the archive"):
        extract_archive(
            path, tmp_path / "x", ReadOptions(BundleLimits(), verify_manifest=False, wanted=lambda n: False)
        )
    with pytest.raises(BundleError, match="after the end of the archive"):
        extract_archive(
            path,
            tmp_path / "y",
            ReadOptions(
                BundleLimits(),
                verify_manifest=True,
                wanted=lambda n: n.startswith("metadata/"),
                stop_when_read=True,
            ),
        )
