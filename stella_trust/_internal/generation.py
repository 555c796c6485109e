"""One generation of the cache: a complete, self-consistent copy of verified trust, named by
its commit sequence, and how target names are stored in it (percent-encoded, as python-tuf
does). Paths and names only: the store writes generations, the verifier reads them."""

from __future__ import annotations

import errno
import functools
import os
import re
from collections.abc import Container
from pathlib import Path
from urllib import parse

from stella_trust.errors import CacheVerificationError

# What Path.is_dir() answers False for (pathlib's ignored errors): absent, not a directory, a loop.
_NOT_A_DIRECTORY = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})


# Names `parse.quote(name, safe="")` leaves as they are (and `unquote` too: no '%'): most target
# names. Asked first, so a sync's per-target encoding costs one match, not a quote and an unquote.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.~-]+")


def target_filename(name: str) -> str:
    """Target names may hold '/', so they are stored percent-encoded, as python-tuf does."""
    if not name:
        raise ValueError("empty target name")
    if not name.startswith(".") and _PLAIN_NAME.fullmatch(name):
        return name  # what the encoding below makes of it
    encoded = parse.quote(name, safe="")
    if encoded.startswith("."):
        # '.' and '..' would name directories, and a leading dot is reserved for scratch
        # files; encoding the dot keeps every name storable and unambiguous.
        encoded = "%2E" + encoded[1:]
    return encoded


def target_name(filename: str) -> str:
    """The target name a stored file holds (the inverse of `target_filename`)."""
    return filename if _PLAIN_NAME.fullmatch(filename) else parse.unquote(filename)


def keep_only_our_kinds(work: Path | str) -> None:
    """A working copy starts from files the cache's owner could have replaced: python-tuf
    opens its local metadata without O_NOFOLLOW (a planted FIFO would hang a root-run sync,
    a link would be read through). Only directories, regular files and the one link python-tuf
    itself makes (`metadata/root.json` -> `root_history/N.root.json`) are kept; anything else
    is dropped, so python-tuf downloads it again and the commit verifies it (decision 18).

    Every sync runs this over its working copy (a host anchored 200 roots back: 200 files), so
    the kinds come from the directory entries themselves (`d_type`, an `lstat` only where the
    file system does not say), never a `stat` and a path object per file."""
    top = os.fspath(work)
    root_link = os.path.join(top, "metadata", "root.json")
    pending = [top]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue  # as os.walk: a directory that cannot be listed is skipped
        for entry in [entry for entry in entries if not entry.is_file(follow_symlinks=False)]:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif not _tuf_root_link(entry, root_link):
                os.unlink(entry.path)


def _tuf_root_link(entry: os.DirEntry[str], root_link: str) -> bool:
    """python-tuf's own `metadata/root.json` link to `root_history/N.root.json`, one component
    below."""
    if not entry.is_symlink() or entry.path != root_link:
        return False
    head, _, rest = os.readlink(entry.path).partition("/")
    return head == "root_history" and bool(rest) and "/" not in rest


def generation_sequence(name: str) -> int | None:
    """A finished generation is named `<commit sequence>-<random>` (older releases used the
    sync's start time in ns, also increasing, so both order together); scratch entries
    start with '.' and have none."""
    head, _, rest = name.partition("-")
    return int(head) if head.isdigit() and rest and not name.startswith(".") else None


class Generation:
    """One complete, self-consistent copy of verified trust."""

    def __init__(self, path: Path) -> None:
        """Paths only: nothing is read or checked until a reader verifies the generation. The
        two directories are built when first asked for (an idle sync never asks the held
        generation for them)."""
        self.path = path

    @functools.cached_property
    def metadata_dir(self) -> Path:
        """Where python-tuf keeps this generation's metadata."""
        return self.path / "metadata"

    @functools.cached_property
    def targets_dir(self) -> Path:
        """Where this generation's targets are stored, by encoded name."""
        return self.path / "targets"

    @functools.cached_property
    def _targets_name(self) -> str:
        """`targets_dir` as a name (`target_file`)."""
        return os.path.join(self.path, "targets")

    def target_path(self, name: str) -> Path:
        """Where a target is stored in this generation, by its encoded name."""
        return self.targets_dir / target_filename(name)

    def target_file(self, name: str) -> str:
        """`target_path` as a name, not a path object: a sync checks every target it holds."""
        return os.path.join(self._targets_name, target_filename(name))

    def stored_target_names(self) -> list[str]:
        """Names of the stored targets; a file whose name is not our encoding is refused (read from
        the directory's entries: every sync lists the held and the working generation)."""
        return sorted(name for name, _ in self._stored_entries())

    def prune_targets(self, keep: Container[str]) -> None:
        """Remove every stored target not in `keep`, by `stored_target_names`' rule (a file whose
        name is not our encoding is refused): a sync drops what the selection no longer wants from
        its working copy, from one listing, in no particular order."""
        for name, path in self._stored_entries():
            if name not in keep:
                os.unlink(path)

    def _stored_entries(self) -> list[tuple[str, str]]:
        """(target name, path) of every stored target, from the directory's entries."""
        try:
            with os.scandir(self.targets_dir) as listing:
                entries = list(listing)
        except OSError as exc:
            if exc.errno in _NOT_A_DIRECTORY:
                return []  # as Path.is_dir() said before: no targets directory, nothing held
            raise
        stored = []
        for entry in entries:
            name = target_name(entry.name)
            if not entry.is_file() or target_filename(name) != entry.name:
                raise CacheVerificationError(f"unexpected entry in the cache: {entry.path}")
            stored.append((name, entry.path))
        return stored
