"""Sealed bundles on disk: a streaming `.tar.zst` writer and a hostile-input reader.

A bundle crosses an air gap on a USB stick, so the reader treats it as an attack:
it streams (memory does not grow with the bundle), takes only regular files under
known prefixes, refuses links, devices, FIFOs, absolute paths, `..`, duplicates and
files the manifest does not list, and stops at size, count and zstd window limits
before they are exceeded. It writes only inside the destination directory it is given.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from stella_trust._internal.settings import BundleLimits as Limits
from stella_trust.errors import StellaError

MANIFEST = "manifest.json"
PREFIXES = ("metadata/", "targets/")
FORMAT = "stella-trust-bundle"
FORMAT_VERSION = 1
ZSTD_LEVEL = 3  # fast: most bytes are already-compressed keys and certificates
MAX_MANIFEST_BYTES = 16 << 20
COPY_CHUNK = 1 << 20
MAX_TRAILING_BYTES = 1 << 20  # tar pads to its record size; more than this is smuggling


class BundleError(StellaError):
    default_hint = "the bundle is corrupt, truncated or hostile; nothing was changed"


@dataclass(frozen=True)
class Entry:
    """One file of a bundle: where it goes and where its bytes come from."""

    path: str
    length: int
    sha256: str
    source: Path | None = None
    data: bytes | None = None

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.source is not None
        return self.source.open("rb")


def check_member_name(name: str) -> str:
    """The only names a bundle may hold: the manifest, or a clean path under a prefix."""
    if name == MANIFEST:
        return name
    if "\\" in name or "\x00" in name or name.startswith("/"):
        raise BundleError(f"Unsafe bundle: member {name!r} has an absolute or odd path")
    parts = PurePosixPath(name).parts
    if any(part in ("..", ".", "") for part in name.split("/")) or not parts:
        raise BundleError(f"Unsafe bundle: member {name!r} escapes its directory")
    if not name.startswith(PREFIXES) or len(parts) < 2:
        raise BundleError(f"Unsafe bundle: member {name!r} is outside manifest.json, metadata/, targets/")
    return name


def parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"Bundle manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("Bundle manifest is not a stella-trust bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"Bundle format version {manifest.get('format_version')!r} is not supported "
            f"(this tool reads version {FORMAT_VERSION})",
            hint="export the bundle with a matching stella-trust version",
        )
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BundleError("Bundle manifest has no file list")
    seen: dict[str, dict[str, Any]] = {}
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise BundleError("Bundle manifest has a malformed file entry")
        path = check_member_name(item["path"])
        if path in seen or path == MANIFEST:
            raise BundleError(f"Bundle manifest lists {path!r} twice")
        if not isinstance(item.get("length"), int) or not isinstance(item.get("sha256"), str):
            raise BundleError(f"Bundle manifest entry {path!r} lacks length or sha256")
        seen[path] = item
    manifest["_by_path"] = seen
    return manifest


# ---- writing ---------------------------------------------------------------------------
def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"


def write_archive(
    out: Path,
    manifest: bytes,
    entries: Iterable[Entry],
    mtime: float,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream manifest first, then every entry, through zstd into `out`."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
    with out.open("wb") as raw, compressor.stream_writer(raw, closefd=False) as zstd_out:
        with tarfile.open(fileobj=zstd_out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, len(manifest), io.BytesIO(manifest), mtime)
            for entry in entries:
                with entry.open() as handle:
                    _add(tar, entry.path, entry.length, _Counting(handle, progress), mtime)
        zstd_out.flush(zstandard.FLUSH_FRAME)
        raw.flush()


def _add(tar: tarfile.TarFile, name: str, size: int, handle: IO[bytes], mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(mtime)
    info.uname = info.gname = ""
    tar.addfile(info, handle)


class _Counting(io.BytesIO):
    """A read-only view of `inner` that reports bytes read (for the progress bar)."""

    def __init__(self, inner: IO[bytes], progress: Callable[[int], None] | None) -> None:
        super().__init__()
        self.inner = inner
        self.progress = progress

    def read(self, size: int | None = -1) -> bytes:
        data = self.inner.read(-1 if size is None else size)
        if self.progress is not None and data:
            self.progress(len(data))
        return data


# ---- reading ---------------------------------------------------------------------------
@dataclass
class Extracted:
    manifest: dict[str, Any]
    manifest_sha256: str
    files: dict[str, tuple[int, str]]  # path -> (length, sha256) as read
    total_bytes: int


def extract_archive(
    bundle: Path,
    dest: Path,
    limits: Limits,
    *,
    verify_manifest: bool,
    progress: Callable[[int], None] | None = None,
) -> Extracted:
    """Extract `bundle` into the empty directory `dest`, refusing anything unsafe."""
    import zstandard

    try:
        size = bundle.stat().st_size
    except OSError as exc:
        raise BundleError(f"Cannot read bundle {bundle}: {exc.strerror}", hint="") from exc
    if size > limits.max_compressed_bytes:
        raise BundleError(
            f"Bundle {bundle} is {size} bytes, over the {limits.max_compressed_bytes}-byte limit",
            hint="raise bundle_limits.max_compressed_bytes if this size is expected",
        )
    decompressor = zstandard.ZstdDecompressor(max_window_size=1 << limits.max_window_log)
    try:
        with bundle.open("rb") as raw, decompressor.stream_reader(raw, read_across_frames=True) as stream:
            return _extract_members(stream, dest, limits, verify_manifest, progress)
    except zstandard.ZstdError as exc:
        raise BundleError(f"Corrupt or truncated bundle (zstd: {exc})") from exc
    except (tarfile.TarError, EOFError, UnicodeError, ValueError) as exc:
        raise BundleError(f"Corrupt or truncated bundle (tar: {exc})") from exc


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def _extract_members(
    stream: IO[bytes],
    dest: Path,
    limits: Limits,
    verify_manifest: bool,
    progress: Callable[[int], None] | None,
) -> Extracted:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        extracted = _walk_members(tar, dest, limits, verify_manifest, progress)
    # Read to the end of the zstd frame so its content checksum is verified, and refuse
    # anything hidden after the tar's end marker beyond normal record padding.
    trailing = 0
    while chunk := stream.read(1 << 16):
        trailing += len(chunk)
        if trailing > MAX_TRAILING_BYTES:
            raise BundleError("Unsafe bundle: data after the end of the archive")
    return extracted


def _walk_members(
    tar: tarfile.TarFile,
    dest: Path,
    limits: Limits,
    verify_manifest: bool,
    progress: Callable[[int], None] | None,
) -> Extracted:
    manifest: dict[str, Any] | None = None
    manifest_sha = ""
    files: dict[str, tuple[int, str]] = {}
    total = 0
    for index, member in enumerate(_members(tar)):
        name = check_member_name(member.name)
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            kind = (
                "a symlink"
                if member.issym()
                else "a hard link"
                if member.islnk()
                else "a FIFO"
                if member.isfifo()
                else "a device"
                if member.isdev()
                else "a directory"
                if member.isdir()
                else "not a regular file"
            )
            raise BundleError(f"Unsafe bundle: member {name!r} is {kind}")
        if index == 0:
            if name != MANIFEST:
                raise BundleError(f"Bundle does not start with {MANIFEST} (found {name!r})")
            if member.size > MAX_MANIFEST_BYTES:
                raise BundleError("Bundle manifest is implausibly large")
            handle = tar.extractfile(member)
            assert handle is not None
            data = handle.read()
            manifest = parse_manifest(data)
            manifest_sha = hashlib.sha256(data).hexdigest()
            continue
        assert manifest is not None
        if name == MANIFEST or name in files:
            raise BundleError(f"Unsafe bundle: duplicate member {name!r}")
        listed = manifest["_by_path"].get(name)
        if listed is None:
            raise BundleError(f"Unsafe bundle: member {name!r} is not in the manifest")
        if len(files) + 1 > limits.max_files:
            raise BundleError(f"Bundle holds more than {limits.max_files} files")
        if member.size > limits.max_file_bytes:
            raise BundleError(
                f"Bundle member {name!r} is {member.size} bytes, over the "
                f"{limits.max_file_bytes}-byte per-file limit"
            )
        total += member.size
        if total > limits.max_uncompressed_bytes:
            raise BundleError(f"Bundle expands beyond the {limits.max_uncompressed_bytes}-byte limit")
        handle = tar.extractfile(member)
        assert handle is not None
        length, digest = _copy_out(handle, dest, name, member.size, progress)
        if verify_manifest and (length != listed["length"] or digest != listed["sha256"]):
            raise BundleError(
                f"Manifest mismatch: {name} has length {length} sha256 {digest}, the manifest "
                f"says length {listed['length']} sha256 {listed['sha256']}",
            )
        files[name] = (length, digest)
    if manifest is None:
        raise BundleError("Bundle is empty")
    if verify_manifest:
        missing = sorted(set(manifest["_by_path"]) - set(files))
        if missing:
            raise BundleError(f"Manifest mismatch: {missing[0]} is listed but not in the bundle")
    return Extracted(manifest, manifest_sha, files, total)


def _copy_out(
    handle: IO[bytes], dest: Path, name: str, size: int, progress: Callable[[int], None] | None
) -> tuple[int, str]:
    target = dest.joinpath(*name.split("/"))
    if not target.resolve().is_relative_to(dest.resolve()):
        raise BundleError(f"Unsafe bundle: member {name!r} escapes the staging directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    length = 0
    with open(target, "xb") as out:
        while chunk := handle.read(COPY_CHUNK):
            length += len(chunk)
            if length > size:
                raise BundleError(f"Bundle member {name!r} is longer than its header says")
            digest.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(len(chunk))
    return length, digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
