"""Where a published repository is read from: a directory (a mounted drive, the served
document root) or an http(s) URL, behind python-tuf's `FetcherInterface` so the same
`Updater` verification reads either, and a would-be publication overlaid on disk files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from stella_trust.errors import UsageError

LOCAL_BASE = "http://repository.invalid/"
CHUNK = 1 << 16


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
            path = content
        elif self.base is None:
            raise exceptions.DownloadHTTPError(f"{relative}: not found", 404)
        else:
            path = self.base / relative
        if path.is_symlink():
            raise exceptions.DownloadHTTPError(f"{relative} is a symbolic link: not served", 404)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise exceptions.DownloadHTTPError(f"{relative}: not found", 404) from None
        except OSError as exc:
            raise exceptions.DownloadError(f"{path}: {exc.strerror}") from exc
        return _chunks(handle)


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


def _chunks(handle: object) -> Iterator[bytes]:
    from typing import BinaryIO, cast

    stream = cast(BinaryIO, handle)
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


class HttpFetcher(FetcherInterface):
    """A published repository over http(s), with connect/read timeouts (lengths are bounded
    by the Updater)."""

    def __init__(self, timeout: float = 30.0) -> None:
        import httpx

        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def _fetch(self, url: str) -> Iterator[bytes]:
        import httpx

        try:
            request = self._client.build_request("GET", url)
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {exc}") from exc
        if response.status_code != 200:
            response.close()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status_code}", response.status_code)
        return self._body(response)

    @staticmethod
    def _body(response: object) -> Iterator[bytes]:
        import httpx

        assert isinstance(response, httpx.Response)
        try:
            yield from response.iter_bytes(CHUNK)
        except httpx.TimeoutException as exc:
            raise exceptions.SlowRetrievalError(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise exceptions.DownloadError(str(exc)) from exc
        finally:
            response.close()


class Source:
    """A published repository: `--from DIR` or `--from URL`."""

    def __init__(self, spec: str | Path) -> None:
        text = str(spec)
        self.spec = text
        if text.startswith(("http://", "https://")):
            self.base_url = text.rstrip("/") + "/"
            self.directory: Path | None = None
            self.fetcher: FetcherInterface = HttpFetcher()
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
        """One file of the published repository (None when it does not exist)."""
        try:
            data = b""
            for chunk in self.fetcher.fetch(self.base_url + relative):
                data += chunk
                if len(data) > limit:
                    raise UsageError(f"{self.spec}/{relative} is larger than {limit} bytes")
            return data
        except exceptions.DownloadHTTPError as exc:
            if exc.status_code in (403, 404):
                return None
            raise UsageError(f"cannot read {self.spec}/{relative}: {exc}") from exc
        except exceptions.DownloadError as exc:
            raise UsageError(
                f"cannot read {self.spec}/{relative}: {exc}", hint="check the URL or the mounted drive"
            ) from exc
