"""Whose credentials a write into the cache uses (docs/design.md, decision 17).

The cache belongs to the service user (the README's `stella-trust`); root may still run
the writers (`sudo trust import`, `sudo trust sync`). Root writing by path into a
directory another user owns is the classic confused deputy: that user can swap any
directory in the middle of a path for a link between root's check and root's write, and
root then creates, renames or removes entries wherever the link points. Checking every
component on every call (a descriptor-relative layer for python-tuf's own writes too) is
not possible from here; giving up root is. So a root writer takes the cache owner's
*effective* uid and gid for as long as it holds the cache lock: every path it resolves,
every file it creates or removes, is then checked by the kernel with the owner's rights,
and a planted link can reach only what the owner could reach already.

The real and saved uids stay 0: the owner cannot ptrace or signal the process (the kernel
requires all three to match), and the inputs the invoker named (a bundle in root's home,
a root-only CA file or service map) are opened with root's rights again for the moment of
the open (`as_invoker`), never for a write into the cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

NO_GROUP = 65534  # the kernel's overflow gid ("nogroup"): no file of the host's is its


class Owner(NamedTuple):  # not a dataclass: built at every start-up (issue 24)
    """The uid and group that own a directory another user writes for."""

    uid: int
    gid: int

    @classmethod
    def to_act_as(cls, directory: os.PathLike[str] | str, st: os.stat_result | None = None) -> Owner | None:
        """The owner root must act as in `directory` (`st`: its `stat`, when the caller has it):
        None when this process is not root, or the directory is root's own (nothing to give up)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        st = st or os.stat(directory)
        return None if st.st_uid == 0 else cls(st.st_uid, st.st_gid)

    def group_ids(self) -> tuple[int, list[int]]:
        """The effective gid and groups root takes: the owner's groups as a login would have
        them, never more. The directory's group (the readers', which files are chgrp'd to) is
        the effective gid when the owner is a member; a cache whose group the owner is not in
        (`chown stella-trust` left it root's) gives the writer only the owner's own groups. A
        bare uid with no passwd entry gets the directory's group unless that is root's."""
        try:
            entry = pwd.getpwuid(self.uid)
        except KeyError:
            own = [self.gid] if self.gid != 0 else []
            return (own[0] if own else NO_GROUP), own
        groups = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))
        return (self.gid if self.gid in groups else entry.pw_gid), groups


@contextlib.contextmanager
def acting_as(owner: Owner | None) -> Iterator[bool]:
    """Run the block with `owner`'s effective uid, gid and groups (None: unchanged); root's
    are restored afterwards, whatever the block raised. Yields whether the block runs as the
    owner: not when the owner cannot read this Python installation (root's own, e.g. under
    /root), since the block's imports would then fail half-way through a write; that host
    keeps root's checked writes (the lock-time checks of decision 17)."""
    if owner is None:
        yield False
        return
    saved_groups, saved_egid = os.getgroups(), os.getegid()
    needed = _import_dirs()
    egid, groups = owner.group_ids()
    try:
        os.setgroups(groups)
        os.setegid(egid)
        os.seteuid(owner.uid)
        if not _can_import_here(needed):
            _restore(saved_groups, saved_egid)
        yield os.geteuid() != 0
    finally:  # also after a drop that failed half-way
        _restore(saved_groups, saved_egid)


def acts_as_owner(owner: Owner) -> bool:
    """Whether a root writer here would act as `owner` (`acting_as` yields True), or keep root's
    checked writes: what `doctor` reports."""
    with acting_as(owner) as as_owner:
        return as_owner


def _restore(groups: list[int], egid: int) -> None:
    """Root's effective ids and groups back (seteuid(0) is allowed: the saved uid is still 0)."""
    if os.geteuid() != 0:
        os.seteuid(0)
    os.setegid(egid)
    os.setgroups(groups)


def _can_import_here(needed: tuple[str, ...]) -> bool:
    """Whether the current effective ids can open the directories a writer imports from
    lazily (opened for real: some filesystems answer access() by other rules)."""
    for path in needed:
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def _import_dirs() -> tuple[str, ...]:
    """The standard library, its extension modules, the installed packages and this one."""
    stdlib = os.path.dirname(os.__file__)
    return (
        stdlib,
        os.path.join(stdlib, "lib-dynload"),
        sysconfig.get_paths()["purelib"],
        str(Path(__file__).resolve().parents[1]),  # the stella_trust package
    )


def acting_for_another() -> bool:
    """Whether this is a root process that gave up its effective uid (inside `acting_as`)."""
    if not hasattr(os, "getresuid"):
        return False
    real, effective, saved = os.getresuid()
    return real == 0 and saved == 0 and effective != 0


@contextlib.contextmanager
def as_invoker() -> Iterator[None]:
    """Open an input the invoker named (a bundle, a CA file, a service map) with the invoker's
    rights: root's, when a root writer is inside `acting_as`. Only opens and reads belong in
    this block: a write here would be root's write by path again."""
    if not acting_for_another():
        yield
        return
    euid, egid = os.geteuid(), os.getegid()
    os.seteuid(0)
    os.setegid(os.getgid())
    try:
        yield
    finally:
        os.setegid(egid)
        os.seteuid(euid)


def open_input(path: Path) -> BinaryIO:
    """A file the invoker named, opened for reading with the invoker's rights (see as_invoker):
    O_NONBLOCK, then it must be a regular file (a FIFO swapped in after the caller's stat would
    hold the cache lock for ever), then blocking reads as usual."""
    with as_invoker():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
