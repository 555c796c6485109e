"""Where a published repository is read from: a directory (a mounted drive, the served
document root) or an http(s) URL, behind python-tuf's `FetcherInterface` so the same
`Updater` verification reads either, and a would-be publication overlaid on disk files.

Both are untrusted input (docs/design.md, threat model: served directory, drives, mirrors):

- **A directory** is read one path component at a time with `O_NOFOLLOW` (a link planted
  anywhere in the path is refused, not followed), the file opened `O_NONBLOCK` (a FIFO
  cannot hang the open) and judged with `fstat`: only a regular file no larger than the
  caller's limit is read. Anything else is one line, never a hang.
- **A URL** is fetched with a per-operation timeout, a whole-request deadline covering
  headers and body, and a size limit. The CLI passes the client's own fetcher
  (`_internal/tuf/fetcher.HttpxFetcher`, whose deadline also covers connect, TLS and
  headers below httpx); this package may not import client internals (pyproject.toml's
  contract), so it takes any `FetcherInterface` and keeps a small fallback of its own for
  in-process use (tests, the demo): `HttpFetcher` below, whose deadline covers the body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from stella_trust._internal.fs import open_beneath
from stella_trust.errors import UnsafeFileError, UsageError

LOCAL_BASE = "http://repository.invalid/"
CHUNK = 1 << 16
# The largest file a served directory may hand us (python-tuf bounds what it reads below
# this: 64 MB targets/snapshot in the operator's Updater config, 512 kB roots).
MAX_FILE = 256 * 1024 * 1024
REQUEST_TIMEOUT = 10.0  # seconds per socket operation
REQUEST_DEADLINE = 120.0  # seconds for one whole request (`download_deadline_seconds`' default)


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
        data = handle.read(limit + 1)
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


class HttpFetcher(FetcherInterface):
    """A published repository over http(s) for in-process use: `timeout` per socket
    operation, `deadline` for each whole body, no redirects, identity encoding only (a
    gzip bomb is never inflated). The CLI uses the client's fetcher instead (module doc)."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT, deadline: float = REQUEST_DEADLINE) -> None:
        import httpx

        self.deadline = deadline
        self._client = httpx.Client(
            timeout=timeout, follow_redirects=False, headers={"Accept-Encoding": "identity"}
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        import httpx

        started = time.monotonic()
        try:
            request = self._client.build_request("GET", url)
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise exceptions.SlowRetrievalError(f"timed out fetching {url}") from exc
        except httpx.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {exc}") from exc
        if response.status_code != 200:
            response.close()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status_code}", response.status_code)
        if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
            response.close()
            raise exceptions.DownloadError(f"{url}: refusing a compressed response")
        return self._body(response, url, started + self.deadline)

    def _body(self, response: object, url: str, deadline_at: float) -> Iterator[bytes]:
        import httpx

        assert isinstance(response, httpx.Response)
        try:
            # raw socket reads (no chunk size: httpx would hold data back until 64 KiB came)
            for chunk in response.iter_raw():
                if time.monotonic() > deadline_at:
                    raise exceptions.SlowRetrievalError(
                        f"{url}: no complete answer within {self.deadline:g} s"
                    )
                yield chunk
        except httpx.TimeoutException as exc:
            raise exceptions.SlowRetrievalError(f"timed out reading {url}") from exc
        except httpx.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {exc}") from exc
        finally:
            response.close()


class Source:
    """A published repository: `--from DIR` or `--from URL` (`fetcher` for URLs: the CLI
    passes the client's; see the module docstring)."""

    def __init__(self, spec: str | Path, *, fetcher: FetcherInterface | None = None) -> None:
        text = str(spec)
        self.spec = text
        # how hints print it: a directory absolute, so the command works from anywhere
        self.hint_spec = text if text.startswith(("http://", "https://")) else str(Path(text).absolute())
        if text.startswith(("http://", "https://")):
            self.base_url = text.rstrip("/") + "/"
            self.directory: Path | None = None
            self.fetcher: FetcherInterface = fetcher or HttpFetcher()
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
    """`N` of every `N.<role>.json` entry in a directory listing (never opened)."""
    suffix = f".{parse.quote(role, safe='')}.json"
    try:
        names = os.listdir(metadata)
    except OSError:
        return []
    found = []
    for name in names:
        number = name[: -len(suffix)] if name.endswith(suffix) else ""
        if number.isdigit() and len(number) < 10:
            found.append(int(number))
    return sorted(found)
