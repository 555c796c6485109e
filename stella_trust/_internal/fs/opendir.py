"""`OpenDir`: writes into a directory others can write, relative to the descriptor held open
(decision 18); `write_output` for `--out` files."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from stella_trust._internal.fs.files import (
    _DIR_FLAGS,
    open_beneath,
    read_bounded,
)
from stella_trust.errors import UnsafeFileError


class OpenDir:
    """A directory held open by its descriptor, for writing where others can write (a served
    directory, a drive, an export's parent): every name below it is opened, created, renamed
    and removed *relative to the descriptor* (the `*at` system calls), one component at a
    time, never following a link. Once the top is open no path is resolved again, so a
    subdirectory swapped for a link after it was checked cannot steer a write, a rename or a
    removal into the directory the link names (the operator's keys/, say): the swap is
    either refused when the name is next opened (ELOOP) or lands in the directory this
    handle holds, and `still_at` tells a writer that the name it published under moved.

    Files are created O_CREAT|O_EXCL|O_NOFOLLOW (never through a planted name), their mode
    set on the descriptor (never by name), and replaced by rename between held descriptors;
    `replacing` checks afterwards that the name it renamed to is still its file.
    """

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown  # how messages name it (never opened again)

    @classmethod
    def open(cls, path: Path, *, create: bool = False, follow: bool = True, mode: int = 0o755) -> OpenDir:
        """The top directory, `path` as its owner typed it (an operator's `--to DIR`, a drive's
        mount point): resolved by the kernel once, here. `follow=False` refuses a link standing
        at `path` itself (an export's OUT, where the name is the output). `create` makes it
        (and missing parents) first."""
        if create:
            with contextlib.suppress(FileExistsError):
                os.makedirs(path, mode)
        flags = _DIR_FLAGS if not follow else os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeFileError(f"refusing {path}: it is a link or not a directory") from None
            raise
        return cls(fd, str(path))

    def __enter__(self) -> OpenDir:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _name(self, name: str) -> str:
        """`name` if it is one plain component (never '.', '..' or a path)."""
        if not name or name in (".", "..") or "/" in name or "\x00" in name:
            raise UnsafeFileError(f"refusing {self.shown}/{name}: not a plain file name")
        return name

    def subdir(self, name: str, *, create: bool = False, mode: int = 0o755) -> OpenDir:
        """The subdirectory `name`, opened O_NOFOLLOW relative to this one (made with `mode`
        when `create` and absent): a link or anything but a directory there is refused."""
        self._name(name)
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=self.fd)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeFileError(
                    f"refusing {self.shown}/{name}: it is a link or not a directory"
                ) from None
            raise
        return OpenDir(fd, f"{self.shown}/{name}")

    def descend(self, relative: str, *, create: bool = False, mode: int = 0o755) -> OpenDir:
        """`subdir` for each component of `relative` ("metadata", "targets/a/b"); a new handle
        (this one stays open), every intermediate one closed."""
        parts = [part for part in relative.split("/") if part]
        if not parts:
            return OpenDir(os.dup(self.fd), self.shown)
        current = self.subdir(parts[0], create=create, mode=mode)
        for part in parts[1:]:
            try:
                following = current.subdir(part, create=create, mode=mode)
            finally:
                current.close()
            current = following
        return current

    @contextlib.contextmanager
    def replacing(self, name: str, mode: int = 0o644, *, durable: bool = True) -> Iterator[BinaryIO]:
        """A new file that replaces `name` when the block succeeds (readers see the old or the
        new one) and is removed when it fails: created O_CREAT|O_EXCL|O_NOFOLLOW under a temp
        name here, `mode` set on the descriptor, fsynced (`durable`), renamed over `name`
        between this held descriptor and itself. If the name does not hold our file after the
        rename (whoever writes here swapped the temp name for a link), it is removed and the
        write refused: what the link names was never written or chmodded."""
        self._name(name)
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, mode, dir_fd=self.fd)
        try:
            os.fchmod(fd, mode)  # exactly `mode`, on the descriptor, whatever the umask
            ours = os.fstat(fd)
            handle = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.unlink(tmp)
            raise
        try:
            try:
                yield handle
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
                handle.close()
            except BaseException:
                with contextlib.suppress(OSError):  # its buffer fails again on a full disk: the
                    handle.close()  # first error is the one to report
                raise
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):  # a read-only or full disk must not mask the real error
                os.unlink(tmp, dir_fd=self.fd)
            raise
        now = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (ours.st_dev, ours.st_ino):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self.fd)
            raise UnsafeFileError(f"refusing {self.shown}/{name}: it was replaced while it was written")
        if durable:
            os.fsync(self.fd)

    def write(self, name: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
        """Replace `name` with `data` (exactly `mode`): `replacing`."""
        with self.replacing(name, mode, durable=durable) as handle:
            handle.write(data)

    def new_subdir(self, name: str, mode: int = 0o700) -> OpenDir:
        """A directory made here where nothing stands (FileExistsError otherwise), opened."""
        os.mkdir(self._name(name), mode, dir_fd=self.fd)
        return self.subdir(name)

    def create(self, name: str, mode: int = 0o600) -> BinaryIO:
        """A new file `name` where nothing stands (O_EXCL|O_NOFOLLOW), for writing, with exactly
        `mode`."""
        self._name(name)
        try:
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                mode,
                dir_fd=self.fd,
            )
        except FileExistsError:
            raise UnsafeFileError(
                f"refusing to write {self.shown}/{name}: something already stands there"
            ) from None
        os.fchmod(fd, mode)
        return os.fdopen(fd, "wb")

    def read(self, relative: str, limit: int) -> bytes | None:
        """A regular file below this directory by the one rule (`open_beneath`), None when
        absent."""
        try:
            fd = open_beneath(self.fd, relative, limit)
        except (FileNotFoundError, NotADirectoryError):
            return None
        with os.fdopen(fd, "rb") as handle:
            data = read_bounded(handle, limit)
        if len(data) > limit:
            raise UnsafeFileError(f"refusing {self.shown}/{relative}: it grew past the {limit}-byte limit")
        return data

    def names(self) -> list[str]:
        """The entries of this directory (listed through the descriptor)."""
        return os.listdir(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        """`name`'s own status (a link is not followed); None when absent."""
        try:
            return os.stat(self._name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def unlink(self, name: str) -> None:
        """Remove the entry `name` (not what it may link to); absent is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(name), dir_fd=self.fd)

    def remove_tree(self, name: str) -> None:
        """Remove the entry `name` and, if it is a real directory, everything below it
        (`shutil.rmtree` relative to the descriptor never follows a link)."""
        st = self.lstat(name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=self.fd, ignore_errors=True)
        else:
            self.unlink(name)

    def rename(self, old: str, new: str, into: OpenDir | None = None) -> None:
        """Rename the entry `old` here to `new` in `into` (default: here), between held
        descriptors; an entry standing at `new` is replaced (a directory only if empty)."""
        target = into if into is not None else self
        os.rename(self._name(old), target._name(new), src_dir_fd=self.fd, dst_dir_fd=target.fd)

    def exchange_in(self, new: str, old: str) -> None:
        """Put the directory `new` at `old`: the previous `old` (a real directory, if any) is
        moved aside, `new` renamed in, the previous one removed. A link at `old` is refused."""
        st = self.lstat(old)
        if st is None:
            self.rename(new, old)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeFileError(f"refusing {self.shown}/{old}: it is a link or not a directory")
        aside = f".{old}.old-{secrets.token_hex(4)}"
        self.rename(old, aside)
        self.rename(new, old)
        self.remove_tree(aside)

    def still_at(self, parent: OpenDir, name: str) -> bool:
        """Whether `parent/name` is still this directory (not moved away, not swapped for a
        link after this handle was opened)."""
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except OSError:
            return False
        mine = os.fstat(self.fd)
        return stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def sync(self) -> None:
        """Make the entries created or renamed here durable."""
        os.fsync(self.fd)


def write_output(path: Path, data: bytes, mode: int = 0o644) -> None:
    """An operator's `--out FILE` (often on a drive others prepared): written through an
    `OpenDir` of its directory, created O_EXCL beside FILE and renamed over it; a link standing
    at FILE is replaced, never written through."""
    with OpenDir.open(path.parent, create=True) as parent:
        parent.write(path.name, data, mode)
