"""An httpx fetcher for python-tuf's ngclient, plus `file://` served from disk.

The fetcher contract has a trap: `FetcherInterface.fetch()` wraps exceptions into
`DownloadError` only while `_fetch` runs, not while the body is iterated. So the
request is sent eagerly here, the status checked here, and the returned generator
maps its own transport failures to python-tuf's exception types. Lengths are
enforced by python-tuf's `download_bytes` over the chunks yielded here.

**One deadline per request** covering connect, TLS, headers and body: see `deadline.py`.

**No content codings.** Requests say `Accept-Encoding: identity`, and a response that is
encoded anyway (`Content-Encoding: gzip`, `br`, ...) is refused with one `DownloadError`
before any of its body is read; bodies are read with `iter_raw()`, so nothing here ever
decompresses. A gzip bomb would otherwise inflate a whole network read (64 KiB becomes
~64 MB) before python-tuf's length limit saw the first chunk. Nothing is lost: TUF
metadata and targets are length-checked and hashed as the bytes served, and they are
small enough that compression buys nothing worth that risk.

**Progress** (`CountingFetcher.progress`) is display only: a hook told each download's file
name and announced length (Content-Length, or the size of a `file://` file; None when not
announced, and never trusted for anything else), then each chunk's size as python-tuf takes
it. It sees bytes only after the deadline and limits have judged them, so it cannot change
what is accepted.

**Proxies** come from the environment (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) and are chosen
per request by `SchemeTransport` (transport.py): httpx stops reading them once a client is
given its own transport, and a proxied request must get the same deadline and CA bundle as a
direct one.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol
from urllib import parse
from urllib import request as urllib_request

from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient import FetcherInterface

from stella_trust._internal.fs import open_untrusted
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.net.deadline import Budget
from stella_trust._version import __version__
from stella_trust.errors import UnsafeFileError

if TYPE_CHECKING:
    import httpx

    from stella_trust._internal.net.transport import SchemeTransport

CHUNK_SIZE = 64 * 1024
MAX_FILE_URL_BYTES = 1 << 40  # python-tuf's length limits bound what is read of a file:// file
USER_AGENT = f"stella-trust/{__version__}"
# The only content coding accepted: bytes are hashed as served (see the module docstring).
IDENTITY = "identity"


# A consistent-snapshot target is served as `<hex digest>.<name>`: the name is what a person knows.
_DIGEST_PREFIX = re.compile(r"^[0-9a-f]{32,128}\.(?=.)")


class Transfer(Protocol):
    """One download as a progress display sees it."""

    def advance(self, count: int) -> None:
        """`count` more bytes were taken by python-tuf."""

    def done(self) -> None:
        """The download ended: finished, refused or stopped."""


# progress(label, announced length or None) -> where to count the bytes (None: not shown)
ProgressHook = Callable[[str, int | None], Transfer | None]


def download_label(url: str) -> str:
    """The file a URL names, for a person: `rekor.pub`, `2.snapshot.json`."""
    name = parse.unquote(PurePosixPath(parse.urlparse(url).path).name) or url
    return _DIGEST_PREFIX.sub("", name)


def _announced_length(response: httpx.Response) -> int | None:
    """Content-Length as a display hint only (python-tuf's length limit still decides)."""
    value = response.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def _refused_encoding(response: httpx.Response) -> str | None:
    """The response's content coding if it is anything but identity (we asked for identity)."""
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
    encoded = [c for c in codings if c and c != IDENTITY]
    return ", ".join(encoded) if encoded else None


class CountingFetcher(FetcherInterface):
    """A python-tuf fetcher that accounts for what it fetched (a sync reports it, and
    tests prove an idle sync costs two requests). Tests substitute an in-memory one."""

    def __init__(self) -> None:
        """Empty records for one sync: its report and the check before a commit (decision 14) read
        only what this fetcher saw."""
        self.requests = 0
        self.bytes_received = 0
        self.urls: list[str] = []
        self.progress: ProgressHook | None = None  # display only (see the module docstring)
        # (url, SHA-256) of every body python-tuf took through download_bytes (its metadata)
        self.delivered: list[tuple[str, bytes]] = []
        self.attempted: list[str] = []  # every URL python-tuf asked for, answered or not
        # (this host's time when the headers arrived, the server's HTTP Date header) of the
        # last response: says whether "expired" is the repository's fault or this host's clock
        self.server_clock: tuple[float, str] | None = None

    def close(self) -> None:
        """Release connections (nothing to release by default)."""

    def fetch(self, url: str) -> Iterator[bytes]:
        """Record every URL python-tuf asks for, answered or not: the root walk is known to be
        complete only when those URLs run without a gap (`_compat_tuf`, decision 14)."""
        self.attempted.append(url)
        return super().fetch(url)

    def download_bytes(self, url: str, max_length: int) -> bytes:
        """python-tuf downloads every metadata file through here. The digest of each body is
        kept: after a refresh that returned, these are the bytes python-tuf verified, which
        lets the check before a commit recognise them (_compat_tuf.updater_checks)."""
        data = super().download_bytes(url, max_length)
        self.delivered.append((url, hashlib.sha256(data).digest()))
        return data

    def _transfer(self, url: str, length: int | None) -> Transfer | None:
        """The progress display's handle for one download (None: nothing is shown)."""
        return None if self.progress is None else self.progress(download_label(url), length)


class HttpxFetcher(CountingFetcher):
    """One client per sync (keep-alive across the handful of requests a refresh makes).

    `timeout` bounds each socket operation (httpx's meaning); `deadline` bounds each whole
    request, connect to last body byte; `should_stop` is polled while any of it waits."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        deadline: float = 120.0,
        ca_bundle: Path | None = None,
        user_agent: str = USER_AGENT,
        should_stop: Callable[[], bool] | None = None,
        progress: ProgressHook | None = None,
        memo: VerificationMemo | None = None,
    ) -> None:
        """Nothing is dialled or loaded here: the client is built by the first HTTP request, so a
        `file://` sync never builds one."""
        self.memo = memo or VerificationMemo()  # TLS contexts and the proxy variables' reading
        self.timeout = timeout
        self.deadline = deadline
        self.ca_bundle = ca_bundle
        self.user_agent = user_agent
        self.should_stop = should_stop
        super().__init__()
        self.progress = progress
        self._budget = Budget(should_stop)
        self._client: httpx.Client | None = None
        self.transport: SchemeTransport | None = None  # the client's, while it is open

    def _http(self) -> httpx.Client:
        """The client, built on the first HTTP request (httpx and httpcore are imported only then):
        identity encoding asked for, redirects followed, every connection through the deadline
        backend (transport.py: httpcore's public pools, no private httpx attribute)."""
        if self._client is None:
            import httpx

            from stella_trust._internal.net.backend import DeadlineBackend
            from stella_trust._internal.net.transport import SchemeTransport

            self.transport = SchemeTransport(self.ca_bundle, DeadlineBackend(self._budget), self.memo)
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout),
                headers={"User-Agent": self.user_agent, "Accept-Encoding": IDENTITY},
                # Proxies from the environment are chosen by the transport (httpx ignores
                # them when given one); trust_env still reads .netrc here.
                transport=self.transport,
                trust_env=True,
                follow_redirects=True,
            )
        return self._client

    def close(self) -> None:
        """Close the client and its kept-alive connections; a later request builds a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self.transport = None

    def __enter__(self) -> HttpxFetcher:
        """The fetcher itself; its connections are closed when the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the connections, whatever ended the block."""
        self.close()

    def _check_stop(self) -> None:
        """Raise `SyncInterrupted` if a stop was requested before a new request starts."""
        self._budget.check_stop()

    def _fetch(self, url: str) -> Iterator[bytes]:
        """python-tuf's hook. The request is sent and its status judged here, while `fetch()` still
        wraps failures into `DownloadError` (the trap in the module docstring); the deadline starts
        before the connect, and the body comes back as a generator."""
        self._check_stop()
        self.requests += 1
        self.urls.append(url)
        token = self._budget.start(url, self.deadline)
        if url.startswith("file:"):
            return self._fetch_file(url, token)
        try:
            response = self._send(url)
        except BaseException:
            self._budget.finish(token)
            raise
        return self._stream(response, url, token)

    def _send(self, url: str) -> httpx.Response:
        """The response with its headers read and judged; its body is not read yet."""
        import httpx

        client = self._http()
        try:
            response = client.send(client.build_request("GET", url), stream=True)
        except httpx.TimeoutException as exc:
            raise tuf_exceptions.SlowRetrievalError(f"timed out fetching {url}") from exc
        except httpx.HTTPError as exc:
            raise tuf_exceptions.DownloadError(f"{url}: {exc}") from exc
        date = response.headers.get("date")
        if date:
            self.server_clock = (time.time(), date)
        if response.status_code != 200:
            response.close()
            raise tuf_exceptions.DownloadHTTPError(
                f"HTTP {response.status_code} for {url}", response.status_code
            )
        if url.startswith("https:") and response.url.scheme != "https":
            response.close()
            raise tuf_exceptions.DownloadError(f"{url}: refusing a redirect from https to http")
        encoding = _refused_encoding(response)
        if encoding is not None:
            response.close()
            raise tuf_exceptions.DownloadError(
                f"{url}: refusing a response with Content-Encoding: {encoding} "
                "(identity was requested; TUF metadata and targets are verified as served)"
            )
        return response

    def _stream(self, response: httpx.Response, url: str, token: int) -> Iterator[bytes]:
        """The body as served, never decoded, with the deadline and stop flag checked at every
        chunk. It maps its own httpx failures to python-tuf's types (`fetch()` no longer wraps them
        while the body is iterated), and closes the response and ends the allowance however
        iteration ends."""
        import httpx

        transfer: Transfer | None = None
        try:
            transfer = self._transfer(url, _announced_length(response))
            # Raw bytes, never decoded (see the module docstring), in chunks no larger than one
            # socket read; no chunk size, or httpx would hold data back until 64 KiB arrived.
            for chunk in response.iter_raw():
                self._budget.remaining()
                self.bytes_received += len(chunk)
                if transfer is not None:
                    transfer.advance(len(chunk))
                yield chunk
        except httpx.TimeoutException as exc:
            raise tuf_exceptions.SlowRetrievalError(f"timed out reading {url}") from exc
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise tuf_exceptions.DownloadError(f"{url}: {exc}") from exc
        finally:
            response.close()
            self._budget.finish(token)
            if transfer is not None:
                transfer.done()

    def _fetch_file(self, url: str, token: int) -> Iterator[bytes]:
        """A `file://` URL (a drive, a mirror directory) opened by fs.py's one rule for directories
        others can write (decision 18): a link, FIFO, device or oversized file is a `DownloadError`,
        and a missing file a 404, which is how python-tuf's root walk learns it has reached the
        newest root (TUF spec 5.3.3)."""
        path = Path(urllib_request.url2pathname(parse.urlparse(url).path))
        try:  # a drive or mirror directory: no links, FIFOs or devices (fs.py's one rule)
            handle = open_untrusted(path, MAX_FILE_URL_BYTES)
        except FileNotFoundError:
            self._budget.finish(token)
            raise tuf_exceptions.DownloadHTTPError(f"{path}: not found", 404) from None
        except UnsafeFileError as exc:
            self._budget.finish(token)
            raise tuf_exceptions.DownloadError(exc.message) from None
        except OSError as exc:
            self._budget.finish(token)
            raise tuf_exceptions.DownloadError(f"{path}: {exc.strerror}") from exc

        def chunks() -> Iterator[bytes]:
            """The file's bytes under the same deadline and stop flag as the network (a FIFO or a
            hung NFS mount)."""
            transfer: Transfer | None = None
            with handle:
                try:
                    status = os.fstat(handle.fileno())
                    transfer = self._transfer(url, status.st_size if stat.S_ISREG(status.st_mode) else None)
                    while chunk := handle.read(CHUNK_SIZE):
                        self._budget.remaining()
                        self.bytes_received += len(chunk)
                        if transfer is not None:
                            transfer.advance(len(chunk))
                        yield chunk
                except OSError as exc:
                    raise tuf_exceptions.DownloadError(f"{path}: {exc.strerror}") from exc
                finally:
                    self._budget.finish(token)
                    if transfer is not None:
                        transfer.done()

        return chunks()
