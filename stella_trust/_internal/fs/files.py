"""Atomic writes, durable trees, locks and reads in directories others can write (see the
package docstring: the one rule of decision 18)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from stella_trust.errors import UnsafeFileError

if TYPE_CHECKING:
    from stella_trust._internal.fs.opendir import OpenDir


def atomic_write(
    path: Path,
    data: bytes,
    mode: int = 0o644,
    *,
    durable: bool = True,
    gid: int | None = None,
    mtime_ns: int | None = None,
) -> None:
    """Write via a temp file in the same directory and rename: readers see old or new.

    `durable` adds the fsyncs that make the new content survive a power cut; informational
    files rewritten on every run (the cache state, metrics) skip them. `gid`: the group the
    file must belong to (the cache's readers), whoever writes it (root's `trust import`).
    `mtime_ns`: the new file's modification (and access) time, set on its descriptor after the
    last byte and before the rename, so no reader sees the new content with another mtime (the
    cache state's mtime is the moment of its last attempt, `Store.write_state`).
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
            if durable or mtime_ns is not None:
                handle.flush()
            if mtime_ns is not None:
                os.utime(handle.fileno(), ns=(mtime_ns, mtime_ns))
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


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
def exclusive_lock(
    path: Path, timeout: float, on_busy: Callable[[str], Exception], *, within: OpenDir | None = None
) -> Iterator[None]:
    """Hold an flock on `path` (which records the holder's pid); wait up to `timeout`
    seconds, then raise `on_busy(holder_pid)`. Closing the descriptor releases it, so a
    killed holder never leaves the lock taken. `within`: the directory holding the lock file,
    already open (`path` then only names it in messages): the lock is taken in exactly that
    directory, whatever its path names by now."""
    if within is None and not os.path.isdir(path.parent):  # one stat: every writer meets it made
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(path, None if within is None else within.fd)
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
        # The pid over the old one, then cut to its length: never truncated to zero first, which
        # ext4 (auto_da_alloc) answers with a flush at close on every lock taken.
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)
        if os.fstat(fd).st_size != len(pid):
            os.ftruncate(fd, len(pid))
        yield
    finally:
        os.close(fd)


def _open_lock_file(path: Path, dir_fd: int | None = None) -> int:
    """The lock file lives in a directory its writers' peers may control (a cache the
    service user owns, a served directory): never follow a link planted there (a root
    process would truncate whatever it points to), and only ever use a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path if dir_fd is None else path.name, flags, 0o640, dir_fd=dir_fd)
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
    fd, _ = open_untrusted_fd(path, limit, what)
    try:
        return os.fdopen(fd, "rb", buffering=io.DEFAULT_BUFFER_SIZE)  # no isatty(), no second fstat
    except BaseException:
        os.close(fd)
        raise


def open_untrusted_fd(path: Path | str, limit: int, what: str | None = None) -> tuple[int, os.stat_result]:
    """`open_untrusted`'s checks, answered with the descriptor itself (blocking again: regular
    files only) and the `fstat` that admitted it; the caller closes it. The whole-file reads
    below and the tree comparison use it: no file object, whose constructor would `fstat` the
    file once more, is built for a read that takes the file in one piece."""
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
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_bounded(handle: BinaryIO, limit: int) -> bytes:
    """At most `limit` + 1 bytes of an open file: the byte past `limit` tells the caller the file
    grew past it. The file's size is asked first, because `read(limit + 1)` makes CPython
    allocate all limit + 1 bytes before it reads (512 MiB of address space for a role file:
    ~20 us of mmap for a 3 kB read, on every file a sync or a read opens). A file that grew
    since it was measured (or a pipe, size 0) is read on to the same bound."""
    size = os.fstat(handle.fileno()).st_size
    data = handle.read(min(size, limit) + 1)
    if len(data) <= size or len(data) > limit:
        return data
    return data + handle.read(limit + 1 - len(data))


def read_bounded_fd(fd: int, limit: int, size: int) -> bytes:
    """`read_bounded` for a descriptor whose size (`size`, from the `fstat` that admitted it) is
    known: at most `limit` + 1 bytes, read until the end of the file or past `limit`. Past the
    size asked for, it reads on in pieces of at most 64 KiB (`os.read(n)` allocates n bytes
    first, as `read(limit + 1)` did: read_bounded's reason)."""
    data = os.read(fd, min(size, limit) + 1)
    more: list[bytes] = []  # only a file that grew since it was measured has more
    got = len(data)
    while got <= limit and (piece := os.read(fd, min(limit + 1 - got, 1 << 16))):
        more.append(piece)
        got += len(piece)
    return data + b"".join(more) if more else data


def read_untrusted(path: Path | str, limit: int, what: str | None = None) -> bytes:
    """All of a file `open_untrusted` accepts; a file that grows past `limit` while being
    read is refused too."""
    return read_untrusted_stat(path, limit, what, identity=False)[0]


def read_untrusted_stat(
    path: Path | str, limit: int, what: str | None = None, *, identity: bool = True
) -> tuple[bytes, os.stat_result]:
    """`read_untrusted`, with the `fstat` of the very file read, taken after the read: its
    identity (a later `stat` of the name could be another file's) and its mtime. (`identity`
    False: the `fstat` that admitted the file, for a caller that only wants the bytes.)"""
    fd, st = open_untrusted_fd(path, limit, what)
    try:
        data = read_bounded_fd(fd, limit, st.st_size)
        if identity:
            st = os.fstat(fd)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsafeFileError(f"refusing {what or path}: it grew past the {limit}-byte limit while read")
    return data, st


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
