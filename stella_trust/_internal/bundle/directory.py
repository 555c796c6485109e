"""A directory written by `trust export`, read as hostile input by the sealed archive's
rules (decision 5).

The same layout, uncompressed, and the same refusals: the manifest first; only regular
files under metadata/ and targets/ that the manifest lists; the same limits; nothing
followed (every component is opened with O_NOFOLLOW, by `fs.open_beneath`); and the wanted
files *copied* into the staging directory, so what is verified afterwards is what was read,
whatever happens to the directory meanwhile.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from stella_trust._internal.bundle.layout import (
    MANIFEST,
    MAX_NAME_BYTES,
    BundleError,
    check_member_name,
    measure,
)
from stella_trust._internal.bundle.manifest import Manifest, manifest_limit
from stella_trust._internal.bundle.reading import (
    Budget,
    Extracted,
    ReadOptions,
    check_listed,
    copy_out,
    staging_target,
)
from stella_trust._internal.credentials import as_invoker
from stella_trust._internal.fs import open_beneath, read_bounded
from stella_trust.errors import UnsafeFileError

MAX_DIRECTORY_DEPTH = 32  # below targets/; TUF target paths are a few levels at most
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def extract_directory(root: Path, dest: Path, options: ReadOptions) -> Extracted:
    """`extract_archive` for a directory written by `trust export`: the same options, the
    same refusals (links, devices, names outside metadata/ and targets/, files the manifest
    does not list, the file-count and size limits), and the wanted files copied, never
    linked, under `dest`. A directory is always read whole (each file is opened by name, so
    `stop_when_read` saves nothing); `progress` sees the bytes read from its files."""
    try:  # the directory the operator named may be reached through a link; nothing below it
        with as_invoker():  # read with the invoker's rights (credentials.py)
            top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"Cannot read bundle directory {root}: {exc.strerror}", hint="") from exc
    try:
        with as_invoker():
            manifest, digest, manifest_size = _directory_manifest(top, root, options)
            found = _directory_files(top, options, manifest)
        extracted = Extracted(manifest, digest, {}, 0)
        extracted.total_bytes = sum(size for _name, size in found)
        total = manifest_size + sum(size for name, size in found if options.reads(name))
        with measure(options.progress, options.label, total) as counted:
            if counted is not None:
                counted(manifest_size)
            for name, size in found:
                length, digest = size, ""
                if options.reads(name):
                    target = staging_target(dest, name) if options.wanted(name) else None
                    with os.fdopen(_open_member(top, name), "rb") as handle:
                        length, digest = copy_out(handle, target, name, size, counted, hashed=options.hashes)
                    if length != size:
                        raise BundleError(f"Bundle member {name!r} changed while it was being read")
                    if target is not None:
                        extracted.written.add(name)
                if options.verify_manifest:
                    check_listed(manifest, name, length, digest)
                extracted.files[name] = (length, digest)
    finally:
        os.close(top)
    if options.verify_manifest:
        extracted.check_complete()
    return extracted


def _mode_kind(mode: int) -> str:
    """What a refused non-regular file is, in the words of the refusal."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


def _open_member(top: int, name: str) -> int:
    """A regular file below `top` by the one rule for directories others write
    (`fs.open_beneath`: no link anywhere in the path, no FIFO or device)."""
    try:
        with as_invoker():
            return open_beneath(top, name)
    except UnsafeFileError as exc:
        raise BundleError(
            f"Unsafe bundle: member {name!r}: {exc.message.removeprefix('refusing ')}"
        ) from None
    except OSError as exc:
        raise BundleError(
            f"Unsafe bundle: member {name!r} cannot be opened safely ({exc.strerror})"
        ) from None


def _directory_manifest(top: int, root: Path, options: ReadOptions) -> tuple[Manifest, str, int]:
    """The manifest, read by the one rule and at most its limit + 1 bytes (a file may grow
    after its size was seen), with its digest and size; a directory without one is not an
    export, which is said in its own words."""
    limit = manifest_limit(options.limits.max_files)
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
        data = read_bounded(handle, limit)
    if len(data) > limit:
        raise BundleError("Bundle manifest is implausibly large")
    manifest, digest = options.manifest(data)
    return manifest, digest, len(data)


def _directory_files(top: int, options: ReadOptions, manifest: Manifest) -> list[tuple[str, int]]:
    """Every regular file below metadata/ and targets/ with its size, in name order; anything
    else (a link, a device, a stray name, too many files, too many bytes) is refused."""
    max_files = options.limits.max_files
    budget = Budget(options, manifest)
    found: list[tuple[str, int]] = []
    seen = [0]  # entries met

    def walk(fd: int, prefix: str, depth: int) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                seen[0] += 1
                if seen[0] > max_files + 16:
                    raise BundleError(f"Bundle holds more than {max_files} files")
                name = prefix + entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if not prefix and name in ("metadata", "targets"):
                    if not stat.S_ISDIR(mode):
                        raise BundleError(f"Unsafe bundle: {name}/ is {_mode_kind(mode)}")
                    _descend(fd, entry.name, name, depth)
                    continue
                if name == MANIFEST and stat.S_ISREG(mode):
                    continue
                if not prefix and name == "instances" and manifest.described.get("instances"):
                    continue  # named instances' own export directories, each read by its own pass
                check_member_name(name)
                if stat.S_ISDIR(mode) and prefix.startswith("targets/"):
                    _descend(fd, entry.name, name, depth)
                elif stat.S_ISDIR(mode) and prefix == "metadata/":
                    raise BundleError(f"Unsafe bundle: member {name!r} nests below metadata/")
                elif not stat.S_ISREG(mode):
                    raise BundleError(f"Unsafe bundle: member {name!r} is {_mode_kind(mode)}")
                else:
                    size = entry.stat(follow_symlinks=False).st_size
                    budget.admit(name, size)
                    found.append((name, size))

    def _descend(fd: int, entry: str, name: str, depth: int) -> None:
        if depth >= MAX_DIRECTORY_DEPTH or len(name.encode("utf-8", "replace")) > MAX_NAME_BYTES:
            raise BundleError(f"Unsafe bundle: directory {name[:60]!r} nests too deeply")
        sub = os.open(entry, _DIR_FLAGS, dir_fd=fd)
        try:
            walk(sub, name + "/", depth + 1)
        finally:
            os.close(sub)

    try:
        walk(top, "", 0)
    except OSError as exc:  # changed under the walk, or unreadable: refused in one line
        where = f" ({exc.filename})" if exc.filename else ""
        raise BundleError(f"Cannot read the bundle directory: {exc.strerror or exc}{where}") from exc
    return sorted(found)
