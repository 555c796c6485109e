"""Modes, groups and owners set through descriptors, never by a name that could be swapped for
a link (decision 17, 18)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from stella_trust._internal.fs.files import (
    _READ_FLAGS,
)


def share_tree(
    root: Path,
    dir_mode: int,
    file_mode: int,
    gid: int | None,
    skip: frozenset[tuple[int, int]] = frozenset(),
    uid: int | None = None,
    skip_dirs: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Give every directory under `root` (itself included) `dir_mode` and every regular file
    `file_mode`, group-owned by `gid` (None: leave the group). Symlinks are never followed
    (chmod would act on what they point to). `skip`: (device, inode) of files already set,
    e.g. hard links into a generation that was shared when it was committed. `uid` (root
    only): the owner every entry is given, e.g. the cache owner, for files an older root-run
    writer left root's. `skip_dirs`: directories directly under `root` left out of the walk
    (another writer's tree, e.g. a named instance's cache)."""
    # os.fwalk holds each directory open and never follows a link, and every entry is opened
    # relative to its directory's descriptor: a directory in the middle of a path swapped for a
    # link (by whoever owns the cache) cannot send root's chown/chmod outside the tree.
    for directory, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        if skip_dirs and directory == os.fspath(root):
            dirs[:] = [name for name in dirs if name not in skip_dirs]
        _set_access_fd(dir_fd, os.fstat(dir_fd), dir_mode, gid, uid)
        for name in files:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in skip:
                set_access_at(dir_fd, name, file_mode, gid, st, uid)
            elif stat.S_ISLNK(st.st_mode) and uid is not None and st.st_uid != uid:
                # a link's owner only matters to whoever may replace it; never followed
                os.chown(name, uid, -1 if gid is None else gid, dir_fd=dir_fd, follow_symlinks=False)


def set_access_at(
    dir_fd: int, name: str, mode: int, gid: int | None, st: os.stat_result, uid: int | None = None
) -> None:
    """set_access for `name` in an open directory (see share_tree): the file is opened
    relative to the descriptor, never following a link, and changed through its own."""
    if (
        (gid is None or st.st_gid == gid)
        and (uid is None or st.st_uid == uid)
        and stat.S_IMODE(st.st_mode) == mode
    ):
        return
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.EACCES):
            return  # swapped for a link, removed, or (non-root) unreadable: left alone
        raise
    try:
        now = os.fstat(fd)
        if stat.S_ISREG(now.st_mode):
            _set_access_fd(fd, now, mode, gid, uid)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        # not the writer's file (a hard link someone planted to another user's): left alone
    finally:
        os.close(fd)


def _set_access_fd(fd: int, now: os.stat_result, mode: int, gid: int | None, uid: int | None = None) -> None:
    """chown/chgrp/chmod an open file or directory where it differs (a setgid directory stays
    one; chown clears set-id bits, so the mode is set after it)."""
    if uid is not None and stat.S_ISREG(now.st_mode) and now.st_nlink > 1:
        # Root giving a tree to its owner: a hard link the owner planted to a file outside the
        # tree (a symlink is never followed, a hard link is the file) would be given away too.
        # A multiply-linked file stays root's: the owner can still unlink and (as a reader)
        # read it, and every file is replaced by rename, never rewritten.
        return
    if stat.S_ISDIR(now.st_mode):
        mode |= now.st_mode & stat.S_ISGID
    if (gid is not None and now.st_gid != gid) or (uid is not None and now.st_uid != uid):
        os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        now = os.fstat(fd)
    if stat.S_IMODE(now.st_mode) != mode:
        os.fchmod(fd, mode)


def set_access(path: Path, mode: int, gid: int | None, st: os.stat_result | None = None) -> None:
    """chmod/chgrp `path` only where it differs, through a descriptor opened without following
    a link: in a cache another user owns, a name checked with lstat can be swapped for a link
    before a chmod by path acts on it, and root would change whatever the link points to.
    Anything that is not (or is no longer) a regular file or directory is left alone."""
    st = st or os.lstat(path)
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return
    if stat.S_ISDIR(st.st_mode):
        mode |= st.st_mode & stat.S_ISGID  # an administrator's setgid directory stays one
    if (gid is None or st.st_gid == gid) and stat.S_IMODE(st.st_mode) == mode:
        return
    try:
        fd = os.open(path, _READ_FLAGS | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else 0))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            return  # swapped for a link or removed since lstat: not ours to change
        if exc.errno != errno.EACCES or os.geteuid() == 0:
            raise
        # a non-root owner's own file with no read bit: only that owner can swap it, so
        # acting by path changes nothing the caller could not change anyway
        _set_access_by_path(path, mode, gid, st)
        return
    try:
        now = os.fstat(fd)
        if stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
            return
        if gid is not None and now.st_gid != gid:
            os.fchown(fd, -1, gid)
        if stat.S_IMODE(now.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _set_access_by_path(path: Path, mode: int, gid: int | None, st: os.stat_result) -> None:
    """set_access for a file its (non-root) owner cannot open: see set_access."""
    if gid is not None and st.st_gid != gid:
        os.chown(path, -1, gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
