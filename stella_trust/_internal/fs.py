"""The one way files are written, read from shared directories, and locked.

Every writer (the cache store, the config, operator keys and metadata, bundles, the
metrics file) goes through here so that a reader only ever sees the old or the new
content (docs/design.md, decision 6) and a power cut cannot leave a half-written file.

**Files in directories other users can write** (the cache, which the service user owns and
readers share; a served directory; a USB drive; bundle staging; a mirror directory) are
opened only through `open_untrusted` / `read_untrusted` / `create_exclusive`: never through a
symbolic link planted there (O_NOFOLLOW), never a FIFO or device (O_NONBLOCK, then fstat must
say regular file), never more than a stated size, and created only where nothing stands
(O_EXCL). The threat model in docs/design.md names each such directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from stella_trust.errors import UnsafeFileError


def atomic_write(
    path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True, gid: int | None = None
) -> None:
    """Write via a temp file in the same directory and rename: readers see old or new.

    `durable` adds the fsyncs that make the new content survive a power cut; informational
    files rewritten on every run (the cache state, metrics) skip them. `gid`: the group the
    file must belong to (the cache's readers), whoever writes it (root's `trust import`).
    The temp file is created with O_EXCL|O_NOFOLLOW: a name planted in the directory is
    never written through.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        if gid is not None and os.fstat(fd).st_gid != gid:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask (node_exporter reads metrics 0644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temp path beside `path` for a writer that streams (archives); renamed over
    `path` when the block succeeds, removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a read-only or full disk must not mask the real error
            tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_ids(root: Path) -> frozenset[tuple[int, int]]:
    """(device, inode) of every regular file under `root` (empty if it cannot be read)."""
    found: set[tuple[int, int]] = set()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def fsync_tree(root: Path, durable: frozenset[tuple[int, int]] = frozenset()) -> None:
    """fsync every file and directory under `root` (before it is switched in).

    `durable`: (device, inode) of files already made durable by an earlier commit; a hard
    link to one of them shares its data, so only the directory entry is new (the directory
    is fsynced). A sync that renews only the timestamp of a repository with many roots would
    otherwise fsync every one of them again, although none changed."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in durable:
                continue  # a symlink is a directory entry (its directory is fsynced below)
            file_fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(file_fd)
            finally:
                os.close(file_fd)
        fsync_dir(Path(directory))


def share_tree(
    root: Path,
    dir_mode: int,
    file_mode: int,
    gid: int | None,
    skip: frozenset[tuple[int, int]] = frozenset(),
    skip_dirs: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Give every directory under `root` (itself included) `dir_mode` and every regular file
    `file_mode`, group-owned by `gid` (None: leave the group). Symlinks are never followed
    (chmod would act on what they point to). `skip`: (device, inode) of files already set,
    e.g. hard links into a generation that was shared when it was committed. `skip_dirs`:
    directories directly under `root` left out of the walk (another writer's tree)."""
    # os.fwalk holds each directory open and never follows a link, and every entry is opened
    # relative to its directory's descriptor: a directory in the middle of a path swapped for a
    # link (by whoever owns the cache) cannot send root's chown/chmod outside the tree.
    for directory, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        if skip_dirs and directory == os.fspath(root):
            dirs[:] = [name for name in dirs if name not in skip_dirs]
        _set_access_fd(dir_fd, os.fstat(dir_fd), dir_mode, gid)
        for name in files:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in skip:
                set_access_at(dir_fd, name, file_mode, gid, st)


def set_access_at(dir_fd: int, name: str, mode: int, gid: int | None, st: os.stat_result) -> None:
    """set_access for `name` in an open directory (see share_tree): the file is opened
    relative to the descriptor, never following a link, and changed through its own."""
    if (gid is None or st.st_gid == gid) and stat.S_IMODE(st.st_mode) == mode:
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
            _set_access_fd(fd, now, mode, gid)
    finally:
        os.close(fd)


def _set_access_fd(fd: int, now: os.stat_result, mode: int, gid: int | None) -> None:
    """chgrp/chmod an open file or directory where it differs (a setgid directory stays one)."""
    if stat.S_ISDIR(now.st_mode):
        mode |= now.st_mode & stat.S_ISGID
    if gid is not None and now.st_gid != gid:
        os.fchown(fd, -1, gid)
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


def real_directory(path: Path) -> bool:
    """True if `path` is a directory itself, not a link to one (False if absent). A cache's
    subdirectories are created by us; one replaced by a link would steer root's writes and
    removals into whatever directory it names."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFileError(f"refusing {path}: it is a link or not a directory")
    return True


def remove_entries(directory: Path, doomed: Callable[[str], bool]) -> None:
    """Remove every entry of `directory` whose name `doomed` picks, through a descriptor of the
    directory opened without following a link (shutil.rmtree's own walk below it never follows
    one): a directory swapped for a link after a check cannot turn a prune into removing
    another directory's contents."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFileError(f"refusing {directory}: it is a link or not a directory") from None
        raise
    try:
        for name in os.listdir(fd):
            if not doomed(name):
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float, on_busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold an flock on `path` (which records the holder's pid); wait up to `timeout`
    seconds, then raise `on_busy(holder_pid)`. Closing the descriptor releases it, so a
    killed holder never leaves the lock taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise on_busy(holder) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    """The lock file lives in a directory its writers' peers may control (a cache the
    service user owns, a served directory): never follow a link planted there (a root
    process would truncate whatever it points to), and only ever use a regular file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"refusing the lock file {path}: it is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFileError(f"refusing the lock file {path}: it is not a regular file")
    if st.st_nlink > 1:  # a hard link to someone's file: writing our pid would truncate it
        os.close(fd)
        raise UnsafeFileError(f"refusing the lock file {path}: it is a hard link to another file")
    return fd


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_untrusted(path: Path | str, limit: int, what: str | None = None) -> BinaryIO:
    """Open a file in a directory others can write, for reading: a regular file (never
    through a link, never a FIFO or device) of at most `limit` bytes. FileNotFoundError and
    PermissionError pass through unchanged; anything else is one UnsafeFileError line."""
    name = what or str(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"refusing {name}: it is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"refusing {name}: it is not a regular file")
        if st.st_size > limit:
            raise UnsafeFileError(f"refusing {name}: {st.st_size} bytes, more than the {limit}-byte limit")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_untrusted(path: Path | str, limit: int, what: str | None = None) -> bytes:
    """All of a file `open_untrusted` accepts; a file that grows past `limit` while being
    read is refused too."""
    with open_untrusted(path, limit, what) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFileError(f"refusing {what or path}: it grew past the {limit}-byte limit while read")
    return data


def create_exclusive(path: Path | str, mode: int = 0o600) -> BinaryIO:
    """A new file where nothing stands (O_EXCL: not through a planted link or file), for
    writing; `mode` exactly, whatever the umask."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise UnsafeFileError(f"refusing to write {path}: something already stands there") from None
    os.fchmod(fd, mode)
    return os.fdopen(fd, "wb")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(base: Path | int, relative: str, limit: int | None = None) -> int:
    """A file descriptor of the regular file `base/relative`, for reading: every component of
    `relative` opened without following a link (a planted link anywhere in the path is
    refused, not only at its end), the file itself O_NONBLOCK (never a FIFO's hang), then
    fstat must say regular file of at most `limit` bytes. `base` is a directory path (trusted:
    the caller chose it) or an open directory descriptor (left open). FileNotFoundError when
    it does not exist; UnsafeFileError (one line) for anything else wrong with it."""
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise UnsafeFileError(f"refusing {relative!r}: not a clean relative path")
    top = base if isinstance(base, int) else os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    directory = top
    try:
        for part in parts[:-1]:
            try:
                following = os.open(part, _DIR_FLAGS, dir_fd=directory)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFileError(
                        f"refusing {relative}: {part} is a link or not a directory"
                    ) from None
                raise
            if directory != top:
                os.close(directory)
            directory = following
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(f"refusing {relative}: it is a symbolic link") from None
            if exc.errno in (errno.ENXIO, errno.EISDIR):
                raise UnsafeFileError(f"refusing {relative}: it is not a regular file") from None
            raise
    finally:
        if directory != top:
            os.close(directory)
        if not isinstance(base, int):
            os.close(top)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
        os.close(fd)
        why = "it is not a regular file" if not stat.S_ISREG(st.st_mode) else f"more than {limit} bytes"
        raise UnsafeFileError(f"refusing {relative}: {why}")
    os.set_blocking(fd, True)
    return fd


def write_into(directory: Path, name: str, data: bytes, mode: int = 0o600) -> None:
    """Write `directory/name` where someone else prepared `directory` (a drive handed to an
    operator): the directory is created 0700 if absent and opened O_NOFOLLOW (a planted link
    in its place is refused), the file is created O_EXCL beside its final name and renamed
    over it (never written or chmodded through a planted link), with exactly `mode`."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFileError(f"refusing {directory}: it is a link or not a directory") from None
        raise
    try:
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        file_fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd
        )
        try:
            os.fchmod(file_fd, mode)
            with os.fdopen(file_fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
        os.fsync(fd)
    finally:
        os.close(fd)
