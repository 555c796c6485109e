"""Where a published repository is read from: a directory (a mounted drive, the served
document root) or an http(s) URL, behind python-tuf's `FetcherInterface` so the same
`Updater` verification reads either, and a would-be publication overlaid on disk files.

Both are untrusted input (docs/design.md, threat model: served directory, drives, mirrors):

- **A directory** is read one path component at a time with `O_NOFOLLOW` (a link planted
  anywhere in the path is refused, not followed), the file opened `O_NONBLOCK` (a FIFO
  cannot hang the open) and judged with `fstat`: only a regular file no larger than the
  caller's limit is read. Anything else is one line, never a hang.
- **A URL** is fetched by the client's own fetcher (`_internal/net/fetcher.HttpxFetcher`),
  handed in by the caller: the same whole-request deadline (connect, TLS, headers and
  body), proxies, TLS verification and identity-only decoding as `trust sync`, and python-
  tuf's size limits. This package may not import the client's network stack (the layers
  in pyproject.toml), and keeps none of its own: one HTTP stack, one set of rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from stella_trust._internal.fs import OpenDir, open_beneath, read_bounded
from stella_trust.errors import UnsafeFileError, UsageError

LOCAL_BASE = "http://repository.invalid/"
CHUNK = 1 << 16
# The largest file a served directory may hand us (python-tuf bounds what it reads below
# this: 64 MB targets/snapshot in the operator's Updater config, 512 kB roots).
MAX_FILE = 256 * 1024 * 1024
# what the CLI builds the client's fetcher with for `--from URL` (the client's defaults:
# `request_timeout_seconds` per socket operation, `download_deadline_seconds` per request)
REQUEST_TIMEOUT = 10.0
REQUEST_DEADLINE = 120.0


class UnsafeFile(Exception):
    """A path in an untrusted directory that is not a plain regular file (or too large)."""


class UnsafeDownload(exceptions.DownloadError):
    """What a served directory's fetcher raises for an UnsafeFile: never "not found" (which
    would end a root walk quietly), always the reason, in one line."""


def open_regular(base: Path, relative: str, limit: int = MAX_FILE) -> tuple[int, int]:
    """(fd, size) of `base/relative` by the one rule for directories others write
    (`fs.open_beneath`: no link anywhere in the path, no FIFO, a regular file of at most
    `limit` bytes). FileNotFoundError when it does not exist; UnsafeFile otherwise."""
    try:
        fd = open_beneath(base, relative, limit)
    except UnsafeFileError as exc:
        raise UnsafeFile(exc.message.removeprefix("refusing ").replace(": it is ", " is ", 1)) from None
    return fd, os.fstat(fd).st_size


def read_regular(base: Path, relative: str, limit: int = MAX_FILE) -> bytes | None:
    """The bytes of a regular file in an untrusted directory (None when it does not exist);
    UnsafeFile for a link, a FIFO, a device, a directory or a file over `limit`."""
    try:
        fd, size = open_regular(base, relative, limit)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(fd, "rb") as handle:
        data = read_bounded(handle, limit)
    if len(data) > limit:  # it grew while we read it
        raise UnsafeFile(f"{relative} is larger than {limit} bytes: not read")
    del size
    return data


class DirectoryFetcher(FetcherInterface):
    """Serve `base` (and `overlay`, relative path -> bytes, which wins) as if over HTTP."""

    def __init__(self, base: Path | None, overlay: Mapping[str, bytes | Path] | None = None) -> None:
        self.base = base
        self.overlay = dict(overlay or {})  # relative path -> content, or the file holding it

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(LOCAL_BASE):
            raise exceptions.DownloadHTTPError(f"{url} is outside the repository", 404)
        relative = parse.unquote(url[len(LOCAL_BASE) :])
        if relative.startswith("/") or ".." in relative.split("/"):
            raise exceptions.DownloadHTTPError(f"{relative} is not a clean path", 404)
        if relative in self.overlay:
            content = self.overlay[relative]
            if isinstance(content, bytes):
                return iter([content])
            base, name = content.parent, content.name  # a workspace file we are about to push
        elif self.base is None:
            raise exceptions.DownloadHTTPError(f"{relative}: not found", 404)
        else:
            base, name = self.base, relative
        try:
            fd, _ = open_regular(base, name)
        except (FileNotFoundError, NotADirectoryError):
            raise exceptions.DownloadHTTPError(f"{relative}: not found", 404) from None
        except UnsafeFile as exc:
            raise UnsafeDownload(str(exc)) from None
        except OSError as exc:
            raise exceptions.DownloadError(f"{relative}: {exc.strerror}") from exc
        return _chunks(fd)


def clean_target_name(name: str) -> bool:
    """A target name that stays inside targets/ wherever it is written (TUF spec 5.7: names
    are paths under the targets base; no absolute path, no `.`/`..`, no empty part)."""
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and all(p not in ("", ".", "..") for p in parts)
        and ("\\" not in name and "\x00" not in name)
    )


def _chunks(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


class Source:
    """A published repository: `--from DIR` or `--from URL`. A URL needs `fetcher`, the
    client's (see the module docstring): a second HTTP stack here would be a second set of
    deadline, proxy and TLS rules to keep in step."""

    def __init__(self, spec: str | Path, *, fetcher: FetcherInterface | None = None) -> None:
        text = str(spec)
        self.spec = text
        # how hints print it: a directory absolute, so the command works from anywhere
        self.hint_spec = text if text.startswith(("http://", "https://")) else str(Path(text).absolute())
        if text.startswith(("http://", "https://")):
            self.base_url = text.rstrip("/") + "/"
            self.directory: Path | None = None
            if fetcher is None:
                raise ValueError(
                    f"{text}: reading a URL needs the client's fetcher (see repository/source.py)"
                )
            self.fetcher: FetcherInterface = fetcher
        else:
            directory = Path(text.removeprefix("file://"))
            if not (directory / "metadata").is_dir():
                raise UsageError(
                    f"{directory} is not a published repository (no metadata/ directory)",
                    hint="pass the directory that holds metadata/ and targets/, or its URL",
                )
            self.directory = directory
            self.base_url = LOCAL_BASE
            self.fetcher = DirectoryFetcher(directory)

    def read(self, relative: str, limit: int = 5_000_000) -> bytes | None:
        """One file of the published repository (None when it does not exist); a file that
        is not a regular file, or larger than `limit`, is one line (UsageError)."""
        if self.directory is not None:
            try:
                return read_regular(self.directory, relative, limit)
            except UnsafeFile as exc:
                raise UsageError(f"refused: {self.spec}/{exc}", hint=UNSAFE_HINT) from None
            except OSError as exc:
                raise UsageError(
                    f"cannot read {self.spec}/{relative}: {exc.strerror}",
                    hint="check the mounted drive or directory",
                ) from exc
        try:
            return self.fetcher.download_bytes(self.base_url + relative, limit)
        except exceptions.DownloadHTTPError as exc:
            if exc.status_code in (403, 404):
                return None
            raise UsageError(f"cannot read {self.spec}/{relative}: {exc}") from exc
        except exceptions.DownloadLengthMismatchError:
            raise UsageError(f"refused: {self.spec}/{relative} is larger than {limit} bytes") from None
        except exceptions.DownloadError as exc:
            raise UsageError(
                f"cannot read {self.spec}/{relative}: {exc}", hint="check the URL or the mounted drive"
            ) from exc

    def versions(self, role: str) -> list[int]:
        """The versions `N.<role>.json` a served directory holds (empty for a URL: an HTTP
        server lists nothing). Counted by name only, for choosing versions above them."""
        if self.directory is None:
            return []
        return versions_in(self.directory / "metadata", role)


UNSAFE_HINT = (
    "someone with write access to the served directory or drive planted it; "
    "remove it and run the command again"
)


def versions_in(metadata: Path, role: str) -> list[int]:
    """`N` of every `N.<role>.json` entry in a directory listing (never opened). The listing
    is of `metadata` itself, never of what a link there names."""
    try:
        with OpenDir.open(metadata.parent) as parent, parent.subdir(metadata.name) as held:
            names = held.names()
    except (OSError, UnsafeFileError):
        return []
    return versions_among(names, role)


def versions_among(names: list[str], role: str) -> list[int]:
    """`N` of every `N.<role>.json` among `names`, in order."""
    suffix = f".{parse.quote(role, safe='')}.json"
    found = []
    for name in names:
        number = name[: -len(suffix)] if name.endswith(suffix) else ""
        if number.isdigit() and len(number) < 10:
            found.append(int(number))
    return sorted(found)
