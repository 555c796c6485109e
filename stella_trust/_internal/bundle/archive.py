"""Sealed bundles on disk: the hostile-input reader (the writer is in layout, beside the
format it emits; its names are re-exported here for export).

A bundle crosses an air gap on a USB stick, so the reader treats it as an attack
(decision 5): it streams, and every layer is bounded *before* the layer above parses it.
The compressed file must be exactly one zstd frame (walked as it is read, so a second or
skippable frame is refused as it arrives); every decompressed byte tarfile reads, headers
included, counts against the uncompressed limit; tar extended headers (pax, GNU long
names) are refused over a small size before tarfile reads them whole; nothing may follow
tar's end marker but its zero padding. Only regular files under known prefixes are taken,
and only the members the caller wants are written: the rest are skipped, still counted.

A directory written by `trust export` (the same layout, uncompressed) is read by the same
rules (`extract_directory`): the manifest first, only regular files under metadata/ and
targets/ that the manifest lists, the same limits, nothing followed (every component is
opened with O_NOFOLLOW), and the wanted files *copied* into the staging directory, so what
is verified afterwards is what was read, whatever happens to the directory meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self, cast

from stella_trust._internal.bundle.layout import (
    FORMAT,
    FORMAT_VERSION,
    LEGACY_EMPTY_FRAME,
    MANIFEST,
    MAX_NAME_BYTES,
    ZSTD_LEVEL,
    BundleError,
    Entry,
    Progress,
    check_member_name,
    manifest_bytes,
    manifest_limit,
    measure,
    parse_manifest,
    sha256_file,
    write_archive,
)
from stella_trust._internal.fs import open_beneath
from stella_trust._internal.settings import BundleLimits as Limits
from stella_trust.errors import UnsafeFileError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ZSTD_LEVEL",
    "BundleError",
    "Entry",
    "Extracted",
    "extract_archive",
    "extract_directory",
    "manifest_bytes",
    "read_bundle",
    "sha256_file",
    "write_archive",
]

COPY_CHUNK = 1 << 20
MAX_EXTENDED_HEADER_BYTES = 64 << 10  # a pax record set or GNU long name; honest ones are < 1 KiB
MAX_EXTENDED_CHAIN = 3  # consecutive extended headers before one member (tarfile recurses)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_DIRECTORY_DEPTH = 32  # below targets/; TUF target paths are a few levels at most


# ---- the layers under tarfile ------------------------------------------------------------
class _OneFrame:
    """The compressed file as the zstd decoder reads it, walked block by block (RFC 8878
    3.1): decoders skip skippable frames silently and read across frames, so anything
    after the first frame's last block and checksum is refused here, as it arrives."""

    def __init__(self, raw: IO[bytes], counted: Callable[[int], None] | None = None) -> None:
        self.raw = raw
        self.counted = counted  # bytes read from the file (progress)
        self.consumed = 0
        self.pending = bytearray()
        self.need = 5  # magic + frame header descriptor
        self.state = "magic"
        self.skip = 0
        self.checksum = False
        self.trailer = b""

    def read(self, size: int = -1) -> bytes:
        data = self._raw_read(size if size >= 0 else COPY_CHUNK)
        self._walk(data)
        return data

    def _raw_read(self, size: int) -> bytes:
        data = self.raw.read(size)
        if data:
            self.consumed += len(data)
            if self.counted is not None:
                self.counted(len(data))
        return data

    def finish(self) -> None:
        """At the end of decoding: the frame must be whole, and the file must end with it
        (the decoder may have stopped reading exactly at the frame's end)."""
        if self.state != "done" or self.skip or self.pending:
            raise BundleError("Corrupt or truncated bundle (the zstd frame is incomplete)")
        while data := self._raw_read(COPY_CHUNK):
            self._trailer(data)
        if self.trailer not in (b"", LEGACY_EMPTY_FRAME):
            raise BundleError("Corrupt or truncated bundle (a truncated second zstd frame)")

    def _trailer(self, data: bytes) -> None:
        """After the frame: nothing, or the empty frame earlier writers appended."""
        self.trailer += data
        if not LEGACY_EMPTY_FRAME.startswith(self.trailer):
            raise BundleError("Unsafe bundle: data after the end of the archive (a second zstd frame)")

    def _walk(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if self.skip:
                step = min(self.skip, len(data) - pos)
                self.skip -= step
                pos += step
                continue
            if self.state == "done":
                self._trailer(data[pos:])
                return
            take = min(self.need - len(self.pending), len(data) - pos)
            self.pending += data[pos : pos + take]
            pos += take
            if len(self.pending) == self.need:
                header = bytes(self.pending)
                self.pending.clear()
                self._advance(header)

    def _advance(self, header: bytes) -> None:
        if self.state == "magic":
            if header[:4] != ZSTD_MAGIC:
                raise BundleError("Corrupt or truncated bundle (not a single zstd frame)")
            descriptor = header[4]
            single_segment = bool(descriptor & 0x20)
            if descriptor & 0x08:
                raise BundleError("Corrupt or truncated bundle (zstd frame header reserved bit set)")
            self.checksum = bool(descriptor & 0x04)
            rest = (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
            rest += (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            self.state, self.need = ("header", rest) if rest else ("block", 3)
        elif self.state == "header":
            self.state, self.need = "block", 3
        elif self.state == "block":
            value = int.from_bytes(header, "little")
            kind, size = (value >> 1) & 3, value >> 3
            if kind == 3:
                raise BundleError("Corrupt or truncated bundle (reserved zstd block type)")
            self.skip = 1 if kind == 1 else size  # an RLE block carries one byte
            if value & 1:
                self.state, self.need = ("checksum", 4) if self.checksum else ("done", 1)
        else:  # the content checksum (the decoder verifies it)
            self.state, self.need = "done", 1


class _Limited:
    """Decompressed bytes as tarfile reads them: everything, headers and padding included,
    counts against the uncompressed limit, so no header can make tarfile buffer more."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        wanted = size if size >= 0 else COPY_CHUNK
        data = self.inner.read(min(wanted, self.limit - self.count + 1))
        self.count += len(data)
        if self.count > self.limit:
            raise BundleError(f"Bundle expands beyond the {self.limit}-byte limit")
        return data


def _guarded_tarinfo() -> type[tarfile.TarInfo]:
    """A TarInfo that refuses, from the 512-byte header alone, what tarfile would otherwise
    read whole or recurse on: big or chained extended headers, global pax headers, sparse
    files. It also turns a damaged header into a refusal (tarfile takes one after the first
    member for the end of the archive, which would hide what follows)."""
    chain = [0]

    class Guarded(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            if len(buf) == tarfile.BLOCKSIZE and not bytes(buf).strip(b"\0"):
                return super().frombuf(buf, encoding, errors)  # the end marker: tarfile stops
            try:
                info = super().frombuf(buf, encoding, errors)
            except tarfile.HeaderError as exc:
                raise BundleError(f"Corrupt or truncated bundle (tar header: {exc})") from None
            if info.type in (tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_SPARSE):
                raise BundleError(f"Unsafe bundle: tar header type {info.type!r} is not accepted")
            if info.type in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                if info.size > MAX_EXTENDED_HEADER_BYTES:
                    raise BundleError(
                        f"Unsafe bundle: a {info.size}-byte tar extended header "
                        f"(over the {MAX_EXTENDED_HEADER_BYTES}-byte limit)"
                    )
                chain[0] += 1
                if chain[0] > MAX_EXTENDED_CHAIN:
                    raise BundleError("Unsafe bundle: a chain of tar extended headers")
            else:
                chain[0] = 0
            return info

        # pax GNU sparse maps (versions 0.0, 0.1, 1.0): a list per number, read from the data
        def _proc_gnusparse_00(self, *args: Any) -> None:
            raise BundleError("Unsafe bundle: a sparse file")

        _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00

    return Guarded


# ---- reading ---------------------------------------------------------------------------
@dataclass
class Extracted:
    manifest: dict[str, Any]
    manifest_sha256: str
    files: dict[str, tuple[int, str]]  # every member read: path -> (length, sha256 or "")
    total_bytes: int
    written: set[str] = field(default_factory=set)  # the members written under dest
    # False when the pass stopped once every wanted member was read (`stop_when_read`): the
    # rest of the archive was neither read nor checked, and `files` holds only what was read.
    whole: bool = True

    def absorb(self, later: Extracted) -> None:
        """Take the figures of a later whole pass over the same archive (same manifest)."""
        if later.manifest_sha256 != self.manifest_sha256:
            raise BundleError("Bundle changed while it was being read")
        for name, found in later.files.items():
            self.files.setdefault(name, found)
        self.written |= later.written
        if later.whole:
            self.total_bytes, self.whole = later.total_bytes, True


@dataclass(frozen=True)
class _Pass:
    dest: Path
    limits: Limits
    verify_manifest: bool
    wanted: Callable[[str], bool]
    member_limit: Callable[[str], int | None]
    expect_manifest: str | None
    hash_members: bool = False
    stop_when_read: bool = False

    def reads(self, name: str) -> bool:
        """Whether a member's bytes are read (written or hashed), not skipped."""
        return self.wanted(name) or self.verify_manifest or self.hash_members

    @property
    def hashes(self) -> bool:
        """Whether members are hashed while read: only when someone looks at the digest. An
        import judges each target by the hashes its signed metadata lists (python-tuf's
        check), so a plain extraction hashing it too would hash every byte twice."""
        return self.verify_manifest or self.hash_members


def read_bundle(
    bundle: Path,
    dest: Path,
    limits: Limits,
    *,
    verify_manifest: bool,
    progress: Progress | None = None,
    label: str = "read",
    wanted: Callable[[str], bool] | None = None,
    member_limit: Callable[[str], int | None] | None = None,
    expect_manifest: str | None = None,
    hash_members: bool = False,
    stop_when_read: bool = False,
) -> Extracted:
    """A sealed `.tar.zst` (`extract_archive`) or an exported directory (`extract_directory`),
    by what `bundle` is; both take the same arguments and apply the same rules.

    `stop_when_read` (a `.tar.zst` only, and never with `verify_manifest`): end the pass once
    every member the manifest lists and `wanted` selects has been read, without reading (or
    checking) the rest; the result says so (`whole` False), and a later whole pass must check
    the archive before anything from it is committed."""
    reader = extract_directory if bundle.is_dir() else extract_archive
    return reader(
        bundle,
        dest,
        limits,
        verify_manifest=verify_manifest,
        progress=progress,
        label=label,
        wanted=wanted,
        member_limit=member_limit,
        expect_manifest=expect_manifest,
        hash_members=hash_members,
        stop_when_read=stop_when_read and not verify_manifest,
    )


def extract_archive(
    bundle: Path,
    dest: Path,
    limits: Limits,
    *,
    verify_manifest: bool,
    progress: Progress | None = None,
    label: str = "read",
    wanted: Callable[[str], bool] | None = None,
    member_limit: Callable[[str], int | None] | None = None,
    expect_manifest: str | None = None,
    hash_members: bool = False,
    stop_when_read: bool = False,
) -> Extracted:
    """Read `bundle` once, refusing anything unsafe; write the `wanted` members (default:
    all) under `dest`. `member_limit` may lower the per-file limit for a name;
    `expect_manifest` (a sha256) refuses a bundle changed since an earlier pass;
    `hash_members` hashes every member (in `Extracted.files`) without judging it against
    the manifest (`verify_manifest` refuses the first mismatch). `progress` sees the
    stage `label` with the bundle's size, and every byte read from the file."""
    import zstandard

    try:
        status = bundle.stat()
    except OSError as exc:
        raise BundleError(f"Cannot read bundle {bundle}: {exc.strerror}", hint="") from exc
    if not stat.S_ISREG(status.st_mode):
        raise BundleError(f"Bundle {bundle} is not a regular file", hint="name the .tar.zst file itself")
    size = status.st_size
    if size > limits.max_compressed_bytes:
        raise BundleError(
            f"Bundle {bundle} is {size} bytes, over the {limits.max_compressed_bytes}-byte limit",
            hint="raise bundle_limits.max_compressed_bytes if this size is expected",
        )
    job = _Pass(
        dest,
        limits,
        verify_manifest,
        wanted or (lambda _name: True),
        member_limit or (lambda _name: None),
        expect_manifest,
        hash_members,
        stop_when_read and not verify_manifest,
    )
    decompressor = zstandard.ZstdDecompressor(max_window_size=1 << limits.max_window_log)
    try:
        with bundle.open("rb") as raw, measure(progress, label, size) as counted:
            frame = _OneFrame(raw, counted)
            # Both wrappers are duck-typed files: the decoder and tarfile only call read().
            with decompressor.stream_reader(cast(IO[bytes], frame), read_across_frames=False) as stream:
                limited = cast(IO[bytes], _Limited(stream, limits.max_uncompressed_bytes))
                with tarfile.open(fileobj=limited, mode="r|", tarinfo=_guarded_tarinfo()) as tar:
                    extracted = _walk_members(tar, job)
                    if extracted.whole:
                        _check_end(tar)
            if extracted.whole:
                frame.finish()
            elif counted is not None:
                counted(max(0, size - frame.consumed))  # this stage is done: the rest is not its to read
            return extracted
    except zstandard.ZstdError as exc:
        raise BundleError(f"Corrupt or truncated bundle (zstd: {exc})") from exc
    except (tarfile.TarError, EOFError, UnicodeError, ValueError) as exc:
        raise BundleError(f"Corrupt or truncated bundle (tar: {exc})") from exc
    except RecursionError:
        raise BundleError("Unsafe bundle: tar headers nested too deeply") from None


def _check_end(tar: tarfile.TarFile) -> None:
    """After the end marker, only tar's own zero padding to its record size may follow:
    anything else is smuggled data no member accounts for. Reading to the end also makes
    the decoder check the frame's content checksum."""
    end = tar.offset  # where the end marker's first zero block starts
    allowed = -(-(end + 2 * tarfile.BLOCKSIZE) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE - end
    seen = tar.fileobj.tell() - end  # the zero block tarfile read to find the end
    while chunk := tar.fileobj.read(tarfile.RECORDSIZE):
        seen += len(chunk)
        if seen > allowed or chunk.strip(b"\0"):
            raise BundleError("Unsafe bundle: data after the end of the archive")
    if seen < 2 * tarfile.BLOCKSIZE:
        raise BundleError("Corrupt or truncated bundle (no tar end-of-archive marker)")


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    # tarfile keeps every member (and its pax headers) in a list even in stream mode; a
    # streaming reader must not hold 10,000 of them.
    members: list[tarfile.TarInfo] = vars(tar)["members"]
    while True:
        member = tar.next()
        members.clear()
        if member is None:
            return
        yield member


def _kind(member: tarfile.TarInfo) -> str:
    kinds = {tarfile.SYMTYPE: "a symlink", tarfile.LNKTYPE: "a hard link", tarfile.FIFOTYPE: "a FIFO"}
    kinds |= {tarfile.CHRTYPE: "a device", tarfile.BLKTYPE: "a device", tarfile.DIRTYPE: "a directory"}
    return kinds.get(member.type, "not a regular file")


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, job: _Pass) -> tuple[dict[str, Any], str]:
    name = check_member_name(member.name)
    if name != MANIFEST:
        raise BundleError(f"Bundle does not start with {MANIFEST} (found {name!r})")
    if member.size > manifest_limit(job.limits.max_files):
        raise BundleError("Bundle manifest is implausibly large")
    handle = tar.extractfile(member)
    assert handle is not None
    data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if job.expect_manifest is not None and digest != job.expect_manifest:
        raise BundleError("Bundle changed on disk while it was being imported")
    return parse_manifest(data, job.limits.max_files), digest


def _walk_members(tar: tarfile.TarFile, job: _Pass) -> Extracted:
    limits = job.limits
    extracted: Extracted | None = None
    pending: set[str] = set()  # listed, wanted, not read yet (for stop_when_read)
    for member in _members(tar):
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(f"Unsafe bundle: member {check_member_name(member.name)!r} is {_kind(member)}")
        if extracted is None:
            manifest, digest = _read_manifest(tar, member, job)
            extracted = Extracted(manifest, digest, {}, 0)
            pending = {name for name in manifest["_by_path"] if job.wanted(name)}
            if job.stop_when_read and not pending:
                extracted.whole = False
                return extracted
            continue
        name = check_member_name(member.name)
        if name == MANIFEST or name in extracted.files:
            raise BundleError(f"Unsafe bundle: duplicate member {name!r}")
        listed = extracted.manifest["_by_path"].get(name)
        if listed is None:
            raise BundleError(f"Unsafe bundle: member {name!r} is not in the manifest")
        if len(extracted.files) + 1 > limits.max_files:
            raise BundleError(f"Bundle holds more than {limits.max_files} files")
        cap = min(limits.max_file_bytes, job.member_limit(name) or limits.max_file_bytes)
        if member.size > cap:
            raise BundleError(
                f"Bundle member {name!r} is {member.size} bytes, over the {cap}-byte per-file limit"
            )
        extracted.total_bytes += member.size
        if extracted.total_bytes > limits.max_uncompressed_bytes:
            raise BundleError(f"Bundle expands beyond the {limits.max_uncompressed_bytes}-byte limit")
        keep = job.wanted(name)
        if job.reads(name):
            handle = tar.extractfile(member)
            assert handle is not None
            target = _target(job.dest, name) if keep else None
            length, digest = _copy_out(handle, target, name, member.size, hashed=job.hashes)
        else:  # skipped unread: tarfile's next() reads past it, through the limits
            length, digest = member.size, ""
        if job.verify_manifest and (length != listed["length"] or digest != listed["sha256"]):
            raise BundleError(
                f"Manifest mismatch: {name} has length {length} sha256 {digest}, the manifest "
                f"says length {listed['length']} sha256 {listed['sha256']}",
            )
        extracted.files[name] = (length, digest)
        if keep:
            extracted.written.add(name)
        pending.discard(name)
        if job.stop_when_read and not pending:
            extracted.whole = False  # every wanted member is staged; the rest is not read here
            return extracted
    if extracted is None:
        raise BundleError("Bundle is empty")
    if job.verify_manifest:
        missing = sorted(set(extracted.manifest["_by_path"]) - set(extracted.files))
        if missing:
            raise BundleError(f"Manifest mismatch: {missing[0]} is listed but not in the bundle")
    return extracted


def _target(dest: Path, name: str) -> Path:
    target = dest.joinpath(*name.split("/"))
    if not target.resolve().is_relative_to(dest.resolve()):
        raise BundleError(f"Unsafe bundle: member {name!r} escapes the staging directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy_out(
    handle: IO[bytes],
    target: Path | None,
    name: str,
    size: int,
    counted: Callable[[int], None] | None = None,
    *,
    hashed: bool = True,
) -> tuple[int, str]:
    """Hash a member while writing it to `target` (or only hash it, for --verify-manifest);
    the digest is "" when not `hashed`."""
    digest = hashlib.sha256()
    length = 0
    with open(target, "xb") if target is not None else io.BytesIO() as out:
        while chunk := handle.read(COPY_CHUNK):
            length += len(chunk)
            if length > size:
                raise BundleError(f"Bundle member {name!r} is longer than its header says")
            if hashed:
                digest.update(chunk)
            if target is not None:
                out.write(chunk)
            if counted is not None:
                counted(len(chunk))
    return length, digest.hexdigest() if hashed else ""


# ---- an exported directory ---------------------------------------------------------------
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the walk must not hang the open (it is refused by fstat)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _mode_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


def extract_directory(
    root: Path,
    dest: Path,
    limits: Limits,
    *,
    verify_manifest: bool,
    progress: Progress | None = None,
    label: str = "read",
    wanted: Callable[[str], bool] | None = None,
    member_limit: Callable[[str], int | None] | None = None,
    expect_manifest: str | None = None,
    hash_members: bool = False,
    stop_when_read: bool = False,  # a directory is always read whole: each file is opened by name
) -> Extracted:
    """`extract_archive` for a directory written by `trust export`: the same arguments, the
    same refusals (links, devices, names outside metadata/ and targets/, files the manifest
    does not list, the file-count and size limits), and the wanted files copied, never
    linked, under `dest`. `progress` sees the bytes read from the directory's files."""
    job = _Pass(
        dest,
        limits,
        verify_manifest,
        wanted or (lambda _name: True),
        member_limit or (lambda _name: None),
        expect_manifest,
        hash_members,
    )
    try:  # the directory the operator named may be reached through a link; nothing below it
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"Cannot read bundle directory {root}: {exc.strerror}", hint="") from exc
    try:
        manifest, digest, manifest_size = _directory_manifest(top, root, job)
        extracted = Extracted(manifest, digest, {}, 0)
        found = _directory_files(top, job, manifest["_by_path"])
        extracted.total_bytes = sum(size for _name, size in found)
        total = manifest_size + sum(size for name, size in found if job.reads(name))
        with measure(progress, label, total) as counted:
            if counted is not None:
                counted(manifest_size)
            for name, size in found:
                length, digest = size, ""
                if job.reads(name):
                    target = _target(job.dest, name) if job.wanted(name) else None
                    with os.fdopen(_open_member(top, name), "rb") as handle:
                        length, digest = _copy_out(handle, target, name, size, counted, hashed=job.hashes)
                    if length != size:
                        raise BundleError(f"Bundle member {name!r} changed while it was being read")
                    if target is not None:
                        extracted.written.add(name)
                listed = manifest["_by_path"][name]
                if job.verify_manifest and (length != listed["length"] or digest != listed["sha256"]):
                    raise BundleError(
                        f"Manifest mismatch: {name} has length {length} sha256 {digest}, the "
                        f"manifest says length {listed['length']} sha256 {listed['sha256']}",
                    )
                extracted.files[name] = (length, digest)
    finally:
        os.close(top)
    if job.verify_manifest:
        missing = sorted(set(manifest["_by_path"]) - set(extracted.files))
        if missing:
            raise BundleError(f"Manifest mismatch: {missing[0]} is listed but not in the bundle")
    return extracted


def _open_member(top: int, name: str) -> int:
    """A regular file below `top` by the one rule for directories others write
    (`fs.open_beneath`: no link anywhere in the path, no FIFO or device)."""
    try:
        return open_beneath(top, name)
    except UnsafeFileError as exc:
        raise BundleError(
            f"Unsafe bundle: member {name!r}: {exc.message.removeprefix('refusing ')}"
        ) from None
    except OSError as exc:
        raise BundleError(
            f"Unsafe bundle: member {name!r} cannot be opened safely ({exc.strerror})"
        ) from None


def _directory_manifest(top: int, root: Path, job: _Pass) -> tuple[dict[str, Any], str, int]:
    limit = manifest_limit(job.limits.max_files)
    try:
        fd = _open_member(top, MANIFEST)
    except BundleError:
        if not os.path.lexists(root / MANIFEST):
            raise BundleError(
                f"{root} is a directory without {MANIFEST}: not a `trust export` directory",
                hint="name a directory written by `trust export`, or a .tar.zst from `trust snapshot export`",
            ) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BundleError("Bundle manifest is implausibly large")
    digest = hashlib.sha256(data).hexdigest()
    if job.expect_manifest is not None and digest != job.expect_manifest:
        raise BundleError("Bundle changed on disk while it was being imported")
    return parse_manifest(data, job.limits.max_files), digest, len(data)


def _directory_files(top: int, job: _Pass, listed: dict[str, Any]) -> list[tuple[str, int]]:
    """Every regular file below metadata/ and targets/ with its size, in name order; anything
    else (a link, a device, a stray name, too many files, too many bytes) is refused."""
    limits = job.limits
    found: list[tuple[str, int]] = []
    seen = [0, 0]  # entries met, bytes listed

    def walk(fd: int, prefix: str, depth: int) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                seen[0] += 1
                if seen[0] > limits.max_files + 16:
                    raise BundleError(f"Bundle holds more than {limits.max_files} files")
                name = prefix + entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if not prefix and name in ("metadata", "targets"):
                    if not stat.S_ISDIR(mode):
                        raise BundleError(f"Unsafe bundle: {name}/ is {_mode_kind(mode)}")
                    _descend(fd, entry.name, name, depth)
                    continue
                if name == MANIFEST and stat.S_ISREG(mode):
                    continue
                check_member_name(name)
                if stat.S_ISDIR(mode) and prefix.startswith("targets/"):
                    _descend(fd, entry.name, name, depth)
                elif stat.S_ISDIR(mode) and prefix == "metadata/":
                    raise BundleError(f"Unsafe bundle: member {name!r} nests below metadata/")
                elif not stat.S_ISREG(mode):
                    raise BundleError(f"Unsafe bundle: member {name!r} is {_mode_kind(mode)}")
                else:
                    _take(name, entry.stat(follow_symlinks=False).st_size)

    def _descend(fd: int, entry: str, name: str, depth: int) -> None:
        if depth >= MAX_DIRECTORY_DEPTH or len(name.encode("utf-8", "replace")) > MAX_NAME_BYTES:
            raise BundleError(f"Unsafe bundle: directory {name[:60]!r} nests too deeply")
        sub = os.open(entry, _DIR_FLAGS, dir_fd=fd)
        try:
            walk(sub, name + "/", depth + 1)
        finally:
            os.close(sub)

    def _take(name: str, size: int) -> None:
        if name not in listed:
            raise BundleError(f"Unsafe bundle: member {name!r} is not in the manifest")
        if len(found) + 1 > limits.max_files:
            raise BundleError(f"Bundle holds more than {limits.max_files} files")
        cap = min(limits.max_file_bytes, job.member_limit(name) or limits.max_file_bytes)
        if size > cap:
            raise BundleError(f"Bundle member {name!r} is {size} bytes, over the {cap}-byte per-file limit")
        seen[1] += size
        if seen[1] > limits.max_uncompressed_bytes:
            raise BundleError(f"Bundle expands beyond the {limits.max_uncompressed_bytes}-byte limit")
        found.append((name, size))

    try:
        walk(top, "", 0)
    except OSError as exc:  # changed under the walk, or unreadable: refused in one line
        where = f" ({exc.filename})" if exc.filename else ""
        raise BundleError(f"Cannot read the bundle directory: {exc.strerror or exc}{where}") from exc
    return sorted(found)
