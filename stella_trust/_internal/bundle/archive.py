"""Reading a bundle: a sealed `.tar.zst`, or the directory `trust export` writes, by what
the path is (`read_bundle`), with one `ReadOptions` for either.

A bundle crosses an air gap on a USB stick, so the reader treats it as an attack
(decision 5): it streams, and every layer is bounded *before* the layer above parses it
(streamguards.py: one zstd frame, the uncompressed limit, guarded tar headers, nothing after
the end). Only regular files under known prefixes that the manifest lists are taken, the
manifest first, and only the members the caller wants are written: the rest are skipped,
still counted. The writer is in layout.py, beside the format it emits.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import IO, cast

from stella_trust._internal.bundle.directory import extract_directory
from stella_trust._internal.bundle.layout import MANIFEST, BundleError, check_member_name, measure
from stella_trust._internal.bundle.manifest import Manifest, manifest_limit
from stella_trust._internal.bundle.reading import (
    Budget,
    Extracted,
    ReadOptions,
    check_listed,
    copy_out,
    staging_target,
)
from stella_trust._internal.bundle.streamguards import (
    Limited,
    OneFrame,
    check_end,
    guarded_tarinfo,
    member_kind,
    members,
)
from stella_trust._internal.credentials import as_invoker, open_input

__all__ = ["Extracted", "ReadOptions", "extract_archive", "extract_directory", "read_bundle"]


def read_bundle(bundle: Path, dest: Path, options: ReadOptions) -> Extracted:
    """A sealed `.tar.zst` (`extract_archive`) or an exported directory (`extract_directory`),
    by what `bundle` is; both take the same options and apply the same rules."""
    with as_invoker():  # the invoker's path, with the invoker's rights (credentials.py)
        is_directory = bundle.is_dir()
    reader = extract_directory if is_directory else extract_archive
    return reader(bundle, dest, options)


def extract_archive(bundle: Path, dest: Path, options: ReadOptions) -> Extracted:
    """Read `bundle` once, refusing anything unsafe; write the `wanted` members under
    `dest`. The file's size is judged before a byte is decoded; the pass then streams
    through the guarded layers, and unless it stopped early (`options.stops_early`), reads
    to the end of the tar and of the zstd frame."""
    import zstandard

    limits = options.limits
    try:
        with as_invoker():
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
    decompressor = zstandard.ZstdDecompressor(max_window_size=1 << limits.max_window_log)
    try:  # a FIFO or another file swapped in after the stat above: refused, never waited on
        raw_input = open_input(bundle)
    except OSError as exc:
        raise BundleError(f"Cannot read bundle {bundle}: {exc.strerror}", hint="") from exc
    if os.fstat(raw_input.fileno()).st_size != size:
        raw_input.close()
        raise BundleError(f"Bundle {bundle} changed while it was being opened", hint="")
    try:
        with raw_input as raw, measure(options.progress, options.label, size) as counted:
            frame = OneFrame(raw, counted)
            # Both wrappers are duck-typed files: the decoder and tarfile only call read().
            with decompressor.stream_reader(cast(IO[bytes], frame), read_across_frames=False) as stream:
                limited = cast(IO[bytes], Limited(stream, limits.max_uncompressed_bytes))
                with tarfile.open(fileobj=limited, mode="r|", tarinfo=guarded_tarinfo()) as tar:
                    extracted = _walk_members(tar, dest, options)
                    if extracted.whole:
                        check_end(tar)
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


def _read_manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo, options: ReadOptions
) -> tuple[Manifest, str]:
    """The first member must be the manifest, bounded by its header's size before a byte of
    it is read."""
    name = check_member_name(member.name)
    if name != MANIFEST:
        raise BundleError(f"Bundle does not start with {MANIFEST} (found {name!r})")
    if member.size > manifest_limit(options.limits.max_files):
        raise BundleError("Bundle manifest is implausibly large")
    handle = tar.extractfile(member)
    assert handle is not None
    return options.manifest(handle.read())


def _walk_members(tar: tarfile.TarFile, dest: Path, options: ReadOptions) -> Extracted:
    """Every member in order: the manifest first, then each listed member admitted against
    the limits from its header before its bytes are read (or skipped, still counted)."""
    extracted: Extracted | None = None
    budget: Budget | None = None
    pending: set[str] = set()  # listed, wanted, not read yet (for stop_when_read)
    for member in members(tar):
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(
                f"Unsafe bundle: member {check_member_name(member.name)!r} is {member_kind(member)}"
            )
        if extracted is None or budget is None:
            manifest, digest = _read_manifest(tar, member, options)
            extracted = Extracted(manifest, digest, {}, 0)
            budget = Budget(options, manifest)
            pending = {name for name in manifest.files if options.wanted(name)}
            if options.stops_early and not pending:
                extracted.whole = False
                return extracted
            continue
        name = check_member_name(member.name)
        if name == MANIFEST or name in extracted.files:
            raise BundleError(f"Unsafe bundle: duplicate member {name!r}")
        budget.admit(name, member.size)
        extracted.total_bytes = budget.bytes
        keep = options.wanted(name)
        if options.reads(name):
            handle = tar.extractfile(member)
            assert handle is not None
            target = staging_target(dest, name) if keep else None
            length, digest = copy_out(handle, target, name, member.size, hashed=options.hashes)
        else:  # skipped unread: tarfile's next() reads past it, through the limits
            length, digest = member.size, ""
        if options.verify_manifest:
            check_listed(extracted.manifest, name, length, digest)
        extracted.files[name] = (length, digest)
        if keep:
            extracted.written.add(name)
        pending.discard(name)
        if options.stops_early and not pending:
            extracted.whole = False  # every wanted member is staged; the rest is not read here
            return extracted
    if extracted is None:
        raise BundleError("Bundle is empty")
    if options.verify_manifest:
        extracted.check_complete()
    return extracted
