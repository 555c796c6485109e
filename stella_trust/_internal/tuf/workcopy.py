"""A sync's working copy, read as files: what changed against the held generation, the role
versions python-tuf just verified, the names a role lists. Every file is opened by the one
rule for directories others can write (fs.py): the cache is the service user's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stella_trust import errors
from stella_trust._internal.cachestate import Floor
from stella_trust._internal.fs import open_untrusted, open_untrusted_fd, read_bounded, read_untrusted
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.store import Generation
from stella_trust._internal.tuf.offline import MAX_METADATA_FILE, MAX_TARGET_FILE


def listed_names(path: Path | str, memo: VerificationMemo) -> tuple[str, ...]:
    """The target names a metadata file lists, remembered under the file's identity
    (device, inode, size, mtime_ns, ctime_ns): an idle sync's working copy hard-links the
    same files, so the agent parses a 100k-target listing once, not every sync. The names
    only pick a candidate for `<name>.<ext>`; python-tuf then decides whether it exists."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    identity = FileIdentity.of(st)
    known = memo.listings.get(identity)
    if known is not None:
        return known
    try:
        listed = json.loads(read_untrusted(path, MAX_METADATA_FILE))["signed"].get("targets") or {}
    except (ValueError, KeyError, TypeError, AttributeError, OSError, errors.UnsafeFileError):
        return ()
    names = tuple(listed) if isinstance(listed, dict) else ()
    memo.listings.put(identity, names)
    return names


def versions_of(metadata_dir: Path, memo: VerificationMemo | None = None) -> dict[str, int]:
    """Role versions for the report, read from what python-tuf verified and wrote in this sync.

    The targets version is the one snapshot pins: python-tuf refuses a targets.json whose
    version differs from it (TUF spec 5.6.5), and reading it from targets.json itself would
    parse a file of 100k targets again for one number. What a file says is remembered under
    its identity (decision 13's argument: any write changes it), so an idle sync does not
    parse the timestamp and snapshot it parsed last time."""
    versions = {"root": _root_version(metadata_dir)}
    top = os.fspath(metadata_dir)
    for role in ("timestamp", "snapshot"):
        path = f"{top}/{role}.json"  # names, not path objects: every idle sync asks
        identity = _identity(path) if memo is not None else None
        known = memo.role_versions.get(identity) if memo is not None and identity is not None else None
        if known is None:
            with open_untrusted(path, MAX_METADATA_FILE) as handle:
                before = FileIdentity.of(os.fstat(handle.fileno()))
                data = read_bounded(handle, MAX_METADATA_FILE)
                after = FileIdentity.of(os.fstat(handle.fileno()))
            if len(data) > MAX_METADATA_FILE:
                raise errors.UnsafeFileError(f"refusing {path}: it grew past {MAX_METADATA_FILE} bytes")
            signed = json.loads(data)["signed"]
            known = {role: int(signed["version"])}
            if role == "snapshot":
                known["targets"] = int(signed["meta"]["targets.json"]["version"])
            if memo is not None and identity == before == after:  # the bytes the identity names
                memo.role_versions.put(identity, known)
        versions.update(known)
    return versions


def _root_version(metadata_dir: Path) -> int:
    """The version of the root python-tuf trusts: the one its `root.json` link names. python-tuf
    writes `root_history/N.root.json` only with a root whose version is N (the bootstrap under
    its own version, a walked root after `update_root` checked it is N) and points the link at
    the root it ended with (`_update_root_symlink`). Read from the name: python-tuf rewrites that
    file on every sync (`_persist_root`), so its identity is new each time and parsing it would
    be this report's largest cost."""
    name = _root_history_name(metadata_dir)
    version = name.removesuffix(".root.json")
    if not version.isdigit() or version != str(int(version)):
        raise errors.CacheVerificationError(f"{metadata_dir / 'root.json'} names no root version ({name})")
    return int(version)


def _identity(path: str) -> FileIdentity | None:
    """A file's identity without following a link (None: not there)."""
    try:
        return FileIdentity.of(os.stat(path, follow_symlinks=False))
    except OSError:
        return None


def role_file(metadata_dir: Path, role: str) -> Path:
    """python-tuf keeps `root.json` as a link to `root_history/N.root.json`: the file it
    names (only inside root_history/), since cached files are never opened through links."""
    if role != "root":
        return metadata_dir / f"{role}.json"
    return metadata_dir / "root_history" / _root_history_name(metadata_dir)


def _root_history_name(metadata_dir: Path) -> str:
    """The name in root_history/ that python-tuf's `root.json` link names; a link anywhere else is
    refused (built from names, not path objects: every sync asks)."""
    link = os.path.join(metadata_dir, "root.json")
    target = os.readlink(link)
    head, _, name = target.partition("/")
    if head != "root_history" or not name or "/" in name:
        raise errors.CacheVerificationError(f"{link} points outside root_history/ ({target})")
    return name


def held_names(base: Generation | None) -> list[str]:
    """Targets of the generation being replaced (a damaged one holds nothing we can name)."""
    if base is None or not base.path.is_dir():
        return []
    try:
        return base.stored_target_names()
    except errors.StellaError:
        return []


def below_floor(versions: dict[str, int], floor: Floor) -> bool:
    """True if any version is lower than the floor's (an idle sync re-checks the floor: the
    generation it kept may have been rolled back on disk while the repository stayed put)."""
    return any(role in floor and version < floor[role].version for role, version in versions.items())


def same_tree(left: Path, right: Path) -> bool:
    """True if both trees hold the same files with the same bytes (hard links short-cut).

    Read from the directory entries (name, kind and inode come with the listing), in one pass per
    directory pair: an idle sync compares its whole working copy with the held generation every
    interval (a host anchored 200 roots back lists 200 root files on each side)."""
    pending = [(os.fspath(left), os.fspath(right))]
    while pending:
        a_dir, b_dir = pending.pop()
        with os.scandir(b_dir) as listing:
            b_entries = {entry.name: entry for entry in listing}
        with os.scandir(a_dir) as listing:
            a_entries = list(listing)
        if len(a_entries) != len(b_entries):
            return False  # with the names below: the same names, none twice
        for a in a_entries:
            b = b_entries.get(a.name)
            if b is None:
                return False
            if a.inode() == b.inode():
                continue  # one file (or link) hard-linked into both holds the same bytes
            a_link, b_link = a.is_symlink(), b.is_symlink()
            if a_link or b_link:
                if not (a_link and b_link) or os.readlink(a.path) != os.readlink(b.path):
                    return False
            elif a.is_dir():
                if not b.is_dir():
                    return False
                pending.append((a.path, b.path))
            elif not same_bytes(a.path, b.path):
                return False
    return True


def same_bytes(left: str, right: str) -> bool:
    """Two regular files with the same bytes (anything else planted there differs). Sizes are
    compared first (from the `fstat` that admitted each) and read in pieces no larger than the
    file: an idle sync compares the root python-tuf rewrote, a few kB, and a 1 MiB read would
    allocate 1 MiB twice."""
    try:
        fa, sa = open_untrusted_fd(left, MAX_TARGET_FILE)
    except errors.UnsafeFileError:
        return False
    try:
        fb, sb = open_untrusted_fd(right, MAX_TARGET_FILE)
    except BaseException as exc:
        os.close(fa)
        if isinstance(exc, errors.UnsafeFileError):
            return False
        raise
    try:
        if sa.st_size != sb.st_size:
            return False
        piece = min(1 << 20, sa.st_size + 1)
        while (chunk := os.read(fa, piece)) == os.read(fb, piece):
            if not chunk:
                return True
        return False
    finally:
        os.close(fa)
        os.close(fb)
