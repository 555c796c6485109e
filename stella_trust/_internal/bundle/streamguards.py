"""The sealed stream under tarfile, as a hostile-input reader needs it (decision 5): each
layer is bounded *before* the layer above parses it.

The compressed file must be exactly one zstd frame, walked as it is read (RFC 8878 3.1), so
a second or skippable frame is refused as it arrives; every decompressed byte tarfile reads,
headers and padding included, counts against the uncompressed limit; tar extended headers
(pax, GNU long names) are refused over a small size before tarfile reads them whole, and
sparse files, global headers and damaged headers are refused from the 512-byte header;
nothing may follow tar's end marker but its zero padding.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from typing import IO, Any, Self

from stella_trust._internal.bundle.layout import LEGACY_EMPTY_FRAME, BundleError
from stella_trust._internal.bundle.reading import COPY_CHUNK

MAX_EXTENDED_HEADER_BYTES = 64 << 10  # a pax record set or GNU long name; honest ones are < 1 KiB
MAX_EXTENDED_CHAIN = 3  # consecutive extended headers before one member (tarfile recurses)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class OneFrame:
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
        """The decoder's read: bytes pass through unchanged, walked on the way, so what
        follows the frame is refused before the decoder could skip or decode it."""
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


class Limited:
    """Decompressed bytes as tarfile reads them: everything, headers and padding included,
    counts against the uncompressed limit, so no header can make tarfile buffer more."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        """tarfile's read: at most one byte past the limit is asked for, so the refusal comes
        before the decoder inflates more."""
        wanted = size if size >= 0 else COPY_CHUNK
        data = self.inner.read(min(wanted, self.limit - self.count + 1))
        self.count += len(data)
        if self.count > self.limit:
            raise BundleError(f"Bundle expands beyond the {self.limit}-byte limit")
        return data


def guarded_tarinfo() -> type[tarfile.TarInfo]:
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


def check_end(tar: tarfile.TarFile) -> None:
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


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The archive's members one by one. tarfile keeps every member (and its pax headers)
    in a list even in stream mode; a streaming reader must not hold 10,000 of them."""
    members: list[tarfile.TarInfo] = vars(tar)["members"]
    while True:
        member = tar.next()
        members.clear()
        if member is None:
            return
        yield member


def member_kind(member: tarfile.TarInfo) -> str:
    """What a refused non-regular member is, in the words of the refusal."""
    kinds = {tarfile.SYMTYPE: "a symlink", tarfile.LNKTYPE: "a hard link", tarfile.FIFOTYPE: "a FIFO"}
    kinds |= {tarfile.CHRTYPE: "a device", tarfile.BLKTYPE: "a device", tarfile.DIRTYPE: "a directory"}
    return kinds.get(member.type, "not a regular file")
