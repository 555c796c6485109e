"""What export and import share: the bundle's TUF layout, its summary, its progress hook.

A bundle is laid out as the TUF HTTP repository python-tuf would fetch from
(`metadata/N.root.json`, `metadata/V.snapshot.json`, `targets/<hash>.<name>` with
consistent snapshots), so an exported directory is itself a `file://` repository. The
sealed format's member names and its writer live here too: the writer emits exactly what
the hostile reader (decision 5) accepts; the manifest's contents are in manifest.py.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib import parse

from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust.view import Freshness


class Transfer(Protocol):
    """One stage of an export or import as a progress display sees it."""

    def advance(self, count: int) -> None:
        """Count `count` more bytes of this stage."""

    def done(self) -> None:
        """The stage is over (its bar may close), whether or not every byte was counted."""


# progress(stage, total bytes or None) when a stage begins -> where to count them (None:
# not shown). Stages: reading a bundle (bytes read from the file), hashing a staged target,
# writing an export (bytes written). Display only: nothing is decided by it.
Progress = Callable[[str, int | None], Transfer | None]


@contextmanager
def measure(
    progress: Progress | None, label: str, total: int | None
) -> Iterator[Callable[[int], None] | None]:
    """Count one stage's bytes (`advance(n)`), or None when nobody is watching."""
    transfer = progress(label, total) if progress is not None else None
    if transfer is None:
        yield None
        return
    try:
        yield transfer.advance
    finally:
        transfer.done()


class StaleBundleError(errors.StellaError):
    """A bundle whose signed metadata is stale, or expired longer ago than `--reject-if-stale`
    allows: trust a host could not serve is not imported over the trust it holds."""

    default_hint = "export a fresh bundle on a connected host; nothing was changed"


@dataclass
class BundleSummary:
    """What an export or import did, for humans and for `--json`."""

    action: str
    path: str
    files: int
    bytes: int
    versions: dict[str, int]
    freshness: Freshness
    changed: bool = True
    manifest_sha256: str | None = None
    warnings: list[str] = field(default_factory=list)
    sealed_logs: list[dict[str, Any]] = field(default_factory=list)  # tile-log states carried (decision 15)
    instances: dict[str, Any] = field(default_factory=dict)  # per named instance (decision 23), when several

    def to_json(self) -> dict[str, Any]:
        """The summary as `--json` shows it: the one shape export, import and inspect share."""
        return {
            "action": self.action,
            "path": self.path,
            "files": self.files,
            "bytes": self.bytes,
            "versions": self.versions,
            "freshness": self.freshness.to_json(),
            "changed": self.changed,
            "manifest_sha256": self.manifest_sha256,
            "warnings": self.warnings,
            "sealed_logs": self.sealed_logs,
            # only when the bundle carries several instances: a one-instance summary is as before
            **({"instances": self.instances} if self.instances else {}),
        }


def metadata_name(role: str, version: int, consistent: bool) -> str:
    """`metadata/V.<role>.json` with consistent snapshots (TUF spec 5.5.1), else unversioned."""
    encoded = parse.quote(role, safe="")
    return f"metadata/{version}.{encoded}.json" if consistent else f"metadata/{encoded}.json"


def target_path(name: str, info: TargetFile, consistent: bool) -> str:
    """Where python-tuf looks for a target (TUF spec 5.7.3: `<dir>/<hash>.<base>`)."""
    if not consistent:
        return f"targets/{name}"
    return f"targets/{info.get_prefixed_paths()[0]}"


# ---- the sealed format: what the writer emits and the hostile reader accepts -----------
MANIFEST = "manifest.json"
TLOG_PREFIX = "tlogs/"  # tlogs/<log id hex>/checkpoint and tile/... (C2SP tlog-tiles)
INSTANCES_PREFIX = "instances/"  # instances/<NAME>.tar.zst: a named instance's own bundle (decision 23)
NESTED_SUFFIX = ".tar.zst"
PREFIXES = ("metadata/", "targets/", TLOG_PREFIX, INSTANCES_PREFIX)
MAX_COMPONENT_BYTES = 255  # NAME_MAX: a longer component fails with ENAMETOOLONG, not a refusal
MAX_NAME_BYTES = 1024  # leaves room for the cache path inside PATH_MAX
ZSTD_LEVEL = 3  # fast: most bytes are already-compressed keys and certificates
# The empty frame (no content, its checksum) that earlier writers appended after the bundle's
# frame: the only second frame a reader accepts, so their bundles still import.
LEGACY_EMPTY_FRAME = bytes.fromhex("28b52ffd240001000099e9d851")
EXPORT_HINT = "choose an --out on a writable filesystem with room for the bundle; nothing was replaced"


class BundleError(errors.StellaError):
    """A bundle refused as corrupt, truncated or hostile (decision 5); nothing was changed."""

    default_hint = "the bundle is corrupt, truncated or hostile; nothing was changed"


class BundleIOError(errors.StellaError):
    """The filesystem failed under an export or import (full disk, read-only, permissions):
    not the bundle's fault, so the hint points at the disk, not at the bundle."""

    default_hint = (
        "check free space and permissions of the cache directory, and that the bundle is "
        "readable; nothing was changed"
    )


def check_member_name(name: str) -> str:
    """The only names a bundle may hold: the manifest, a flat `metadata/<file>`, or a clean
    path under `targets/`, short enough that creating it cannot fail for its length."""
    if name == MANIFEST:
        return name
    if "\\" in name or name.startswith("/") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise BundleError(f"Unsafe bundle: member {name!r} has an absolute or odd path")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"Unsafe bundle: member {name!r} is not valid UTF-8") from None
    parts = name.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise BundleError(f"Unsafe bundle: member {name!r} escapes its directory")
    if not name.startswith(PREFIXES) or len(parts) < 2:
        raise BundleError(
            f"Unsafe bundle: member {name!r} is outside manifest.json, metadata/, targets/, tlogs/"
        )
    if parts[0] == "metadata" and len(parts) != 2:
        raise BundleError(f"Unsafe bundle: member {name!r} nests below metadata/")
    if parts[0] == "instances" and (len(parts) != 2 or not _nested_bundle_name(parts[1])):
        raise BundleError(f"Unsafe bundle: member {name!r} is not instances/<NAME>{NESTED_SUFFIX}")
    if len(encoded) > MAX_NAME_BYTES or any(len(p.encode()) > MAX_COMPONENT_BYTES for p in parts):
        raise BundleError(
            f"Unsafe bundle: member name {name[:60]!r}… is too long "
            f"(over {MAX_COMPONENT_BYTES} bytes a component or {MAX_NAME_BYTES} in all)"
        )
    return name


def _nested_bundle_name(base: str) -> bool:
    """`<NAME>.tar.zst` with NAME an instance name (settings.INSTANCE_NAME's rule)."""
    import re

    return re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}" + re.escape(NESTED_SUFFIX), base) is not None


def sha256_file(path: Path) -> str:
    """A file's SHA-256, streamed: targets may be large and are not held in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---- writing ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One file of a bundle: where it goes and where its bytes come from."""

    path: str
    length: int
    sha256: str
    source: Path | None = None
    data: bytes | None = None

    def open(self) -> IO[bytes]:
        """The entry's bytes, from memory or from its file, for the writer to stream."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.source is not None
        return self.source.open("rb")


def write_archive(
    out: Path,
    manifest: bytes,
    entries: Iterable[Entry],
    mtime: float,
    progress: Callable[[int], None] | None = None,
    *,
    into: IO[bytes] | None = None,
) -> None:
    """Stream manifest first, then every entry, through zstd into `out` (one frame);
    `progress(n)` counts the content bytes written (the manifest's and every entry's).
    `into`: the file already opened for `out` (fs.OpenDir.replacing, where others can write
    beside it); `out` then only names it.

    A full disk or an unwritable `--out` is the operator's to fix: one line, not a traceback.
    """
    import zstandard

    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
    try:
        # Leaving the writer ends the one frame. (Ending it explicitly first, as version 0.1.0
        # did, appended a second, empty frame: LEGACY_EMPTY_FRAME.)
        with (
            out.open("wb") if into is None else nullcontext(into) as raw,
            compressor.stream_writer(raw, closefd=False) as zstd_out,
            tarfile.open(fileobj=zstd_out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            _add(tar, MANIFEST, len(manifest), _Counting(io.BytesIO(manifest), progress), mtime)
            for entry in entries:
                with entry.open() as handle:
                    _add(tar, entry.path, entry.length, _Counting(handle, progress), mtime)
        if into is not None:
            into.flush()  # a full disk is said here, as one line
    except OSError as exc:
        where = exc.filename or out
        raise BundleIOError(
            f"Cannot write the bundle: {exc.strerror or exc}: {where}", hint=EXPORT_HINT
        ) from exc


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
