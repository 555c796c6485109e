"""An httpx fetcher for python-tuf's ngclient, plus `file://` served from disk.

The fetcher contract has a trap: `FetcherInterface.fetch()` wraps exceptions into
`DownloadError` only while `_fetch` runs, not while the body is iterated. So the
request is sent eagerly here, the status checked here, and the returned generator
maps its own transport failures to python-tuf's exception types. Lengths are
enforced by python-tuf's `download_bytes`; a per-file deadline here stops a server
that dribbles bytes forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib import parse, request

from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient import FetcherInterface

from stella_trust._version import __version__
from stella_trust.errors import SyncInterrupted

if TYPE_CHECKING:
    import httpx

CHUNK_SIZE = 64 * 1024
USER_AGENT = f"stella-trust/{__version__}"


def _scheme_transport_class() -> type:
    import httpx

    class SchemeTransport(httpx.BaseTransport):
        """Builds the TLS transport only when an https:// URL is first requested.

        Loading the system CA bundle costs ~20 ms, five times a whole idle sync against
        a plain-http mirror; certificate verification is unchanged for https (and for
        redirects to it), and plain-http requests never negotiate TLS.
        """

        def __init__(self, ca_bundle: Path | None) -> None:
            self.ca_bundle = ca_bundle
            self._by_scheme: dict[str, httpx.HTTPTransport] = {}

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            scheme = request.url.scheme
            transport = self._by_scheme.get(scheme)
            if transport is None:
                if scheme == "https":
                    verify: str | bool = str(self.ca_bundle) if self.ca_bundle else True
                    transport = httpx.HTTPTransport(verify=verify)
                else:  # plain http: no TLS is ever negotiated, so no CA bundle is needed
                    transport = httpx.HTTPTransport(verify=False)
                self._by_scheme[scheme] = transport
            return transport.handle_request(request)

        def close(self) -> None:
            for transport in self._by_scheme.values():
                transport.close()

    return SchemeTransport


def _SchemeTransport(ca_bundle: Path | None) -> httpx.BaseTransport:
    transport: httpx.BaseTransport = _scheme_transport_class()(ca_bundle)
    return transport


class CountingFetcher(FetcherInterface):
    """A python-tuf fetcher that accounts for what it fetched (a sync reports it, and
    tests prove an idle sync costs two requests). Tests substitute an in-memory one."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes_received = 0
        self.urls: list[str] = []

    def close(self) -> None:
        """Release connections (nothing to release by default)."""


class HttpxFetcher(CountingFetcher):
    """One client per sync (keep-alive across the handful of requests a refresh makes)."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        deadline: float = 120.0,
        ca_bundle: Path | None = None,
        user_agent: str = USER_AGENT,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.ca_bundle = ca_bundle
        self.user_agent = user_agent
        self.should_stop = should_stop
        super().__init__()
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout),
                headers={"User-Agent": self.user_agent},
                transport=_SchemeTransport(self.ca_bundle),
                trust_env=True,  # HTTP(S)_PROXY / NO_PROXY from the environment
                follow_redirects=True,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> HttpxFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise SyncInterrupted("Sync interrupted by a stop request", hint="cached trust is unchanged")

    def _fetch(self, url: str) -> Iterator[bytes]:
        self._check_stop()
        self.requests += 1
        self.urls.append(url)
        if url.startswith("file:"):
            return self._fetch_file(url)
        import httpx

        client = self._http()
        try:
            response = client.send(client.build_request("GET", url), stream=True)
        except httpx.TimeoutException as exc:
            raise tuf_exceptions.SlowRetrievalError(f"timed out fetching {url}") from exc
        except httpx.HTTPError as exc:
            raise tuf_exceptions.DownloadError(f"{url}: {exc}") from exc
        if response.status_code != 200:
            response.close()
            raise tuf_exceptions.DownloadHTTPError(
                f"HTTP {response.status_code} for {url}", response.status_code
            )
        if url.startswith("https:") and response.url.scheme != "https":
            response.close()
            raise tuf_exceptions.DownloadError(f"{url}: refusing a redirect from https to http")
        return self._stream(response, url)

    def _stream(self, response: httpx.Response, url: str) -> Iterator[bytes]:
        import httpx

        deadline = time.monotonic() + self.deadline
        try:
            # No chunk size: httpx would hold data back until 64 KiB arrived, and a server
            # dribbling bytes would never reach the deadline check.
            for chunk in response.iter_bytes():
                self._check_stop()
                if time.monotonic() > deadline:
                    raise tuf_exceptions.SlowRetrievalError(f"{url}: not complete after {self.deadline:g}s")
                self.bytes_received += len(chunk)
                yield chunk
        except httpx.TimeoutException as exc:
            raise tuf_exceptions.SlowRetrievalError(f"timed out reading {url}") from exc
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise tuf_exceptions.DownloadError(f"{url}: {exc}") from exc
        finally:
            response.close()

    def _fetch_file(self, url: str) -> Iterator[bytes]:
        path = Path(request.url2pathname(parse.urlparse(url).path))
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise tuf_exceptions.DownloadHTTPError(f"{path}: not found", 404) from None
        except OSError as exc:
            raise tuf_exceptions.DownloadError(f"{path}: {exc.strerror}") from exc

        def chunks() -> Iterator[bytes]:
            with handle:
                try:
                    while chunk := handle.read(CHUNK_SIZE):
                        self.bytes_received += len(chunk)
                        yield chunk
                except OSError as exc:
                    raise tuf_exceptions.DownloadError(f"{path}: {exc.strerror}") from exc

        return chunks()
