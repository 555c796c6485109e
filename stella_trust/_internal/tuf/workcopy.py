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
from stella_trust._internal.fs import open_untrusted, read_untrusted
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.store import Generation
from stella_trust._internal.tuf.offline import MAX_METADATA_FILE, MAX_TARGET_FILE


def listed_names(path: Path, memo: VerificationMemo) -> tuple[str, ...]:
    """The target names a metadata file lists, remembered under the file's identity
    (device, inode, size, mtime_ns, ctime_ns): an idle sync's working copy hard-links the
    same files, so the agent parses a 100k-target listing once, not every sync. The names
    only pick a candidate for `<name>.<ext>`; python-tuf then decides whether it exists."""
    try:
        st = path.stat()
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


def versions_of(metadata_dir: Path) -> dict[str, int]:
    """Role versions for the report, read from files python-tuf verified in this sync.

    The targets version is the one snapshot pins: python-tuf refuses a targets.json whose
    version differs from it (TUF spec 5.6.5), and reading it from targets.json itself would
    parse a file of 100k targets again for one number."""
    versions = {}
    for role in ("root", "timestamp", "snapshot"):
        document = json.loads(read_untrusted(role_file(metadata_dir, role), MAX_METADATA_FILE))
        versions[role] = int(document["signed"]["version"])
        if role == "snapshot":
            versions["targets"] = int(document["signed"]["meta"]["targets.json"]["version"])
    return versions


def role_file(metadata_dir: Path, role: str) -> Path:
    """python-tuf keeps `root.json` as a link to `root_history/N.root.json`: the file it
    names (only inside root_history/), since cached files are never opened through links."""
    path = metadata_dir / f"{role}.json"
    if role != "root":
        return path
    target = os.readlink(path)
    head, _, name = target.partition("/")
    if head != "root_history" or not name or "/" in name:
        raise errors.CacheVerificationError(f"{path} points outside root_history/ ({target})")
    return metadata_dir / target


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
    """True if both trees hold the same files with the same bytes (hard links short-cut)."""
    pending = [(left, right)]
    while pending:
        a_dir, b_dir = pending.pop()
        with os.scandir(a_dir) as it_a, os.scandir(b_dir) as it_b:
            a_entries = {e.name: e for e in it_a}
            b_entries = {e.name: e for e in it_b}
        if a_entries.keys() != b_entries.keys():
            return False
        for name, a in a_entries.items():
            b = b_entries[name]
            if a.is_symlink() or b.is_symlink():
                if not (a.is_symlink() and b.is_symlink()) or os.readlink(a) != os.readlink(b):
                    return False
            elif a.is_dir():
                if not b.is_dir():
                    return False
                pending.append((Path(a.path), Path(b.path)))
            elif a.inode() != b.inode() and not same_bytes(a.path, b.path):
                return False
    return True


def same_bytes(left: str, right: str) -> bool:
    """Two regular files with the same bytes (anything else planted there differs)."""
    try:
        with open_untrusted(left, MAX_TARGET_FILE) as fa, open_untrusted(right, MAX_TARGET_FILE) as fb:
            while (chunk := fa.read(1 << 20)) == fb.read(1 << 20):
                if not chunk:
                    return True
            return False
    except errors.UnsafeFileError:
        return False
