"""httpx's transport interface over httpcore's public connection pools, dialling through the
deadline backend (backend.py).

httpx's own `HTTPTransport` builds its httpcore pool itself and offers no option for the
pool's network backend, which is where the whole-request deadline lives (deadline.py). So the
transport is ours, built only from public names: `httpcore.ConnectionPool`, `HTTPProxy` and
`SOCKSProxy` take `network_backend=` as a documented argument; a request and a response cross
between httpx and httpcore through their public constructors; httpcore's exceptions become
httpx's public ones by the same rule httpx applies (most specific class wins), so every
caller's `except httpx.TimeoutException` and every message stay what they were.

`SchemeTransport` is what a client holds: it routes each request (redirect hops included) by
scheme and by the proxy the environment names for it (net/environment.py), and builds one
`DeadlineTransport` per route on first use. Only a TLS hop (an https URL, or an https proxy)
loads the CA store, so a plain-http mirror never pays for it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

import httpcore
import httpx

from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.net.environment import environment_proxies, environment_proxy, tls_context

__all__ = ["DeadlineTransport", "SchemeTransport", "httpx_errors"]

# The pool limits httpx's own transport uses (httpx.Limits, its DEFAULT_LIMITS): a sync makes a
# handful of requests to one or two hosts, so they are never reached, only kept as they were.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20
KEEPALIVE_EXPIRY = 5.0

# httpcore's public exceptions and the httpx exceptions callers catch (the pairs httpx's own
# transport maps); read-only, looked up along the raised class's MRO so the most specific wins.
_HTTPX_ERROR: Mapping[type[Exception], type[httpx.HTTPError]] = MappingProxyType(
    {
        httpcore.TimeoutException: httpx.TimeoutException,
        httpcore.ConnectTimeout: httpx.ConnectTimeout,
        httpcore.ReadTimeout: httpx.ReadTimeout,
        httpcore.WriteTimeout: httpx.WriteTimeout,
        httpcore.PoolTimeout: httpx.PoolTimeout,
        httpcore.NetworkError: httpx.NetworkError,
        httpcore.ConnectError: httpx.ConnectError,
        httpcore.ReadError: httpx.ReadError,
        httpcore.WriteError: httpx.WriteError,
        httpcore.ProxyError: httpx.ProxyError,
        httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
        httpcore.ProtocolError: httpx.ProtocolError,
        httpcore.LocalProtocolError: httpx.LocalProtocolError,
        httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    }
)


@contextmanager
def httpx_errors() -> Iterator[None]:
    """Re-raise an httpcore exception as the httpx exception with the same meaning and message.

    Anything else passes untouched: the deadline's `SlowRetrievalError` and the stop flag's
    `SyncInterrupted` are raised inside httpcore's reads and must reach the fetcher as they are."""
    try:
        yield
    except Exception as exc:
        mapped = next((_HTTPX_ERROR[cls] for cls in type(exc).__mro__ if cls in _HTTPX_ERROR), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    """An httpcore response body as httpx reads it: streamed chunk by chunk as the socket delivers
    them (size limits are judged while reading), its failures mapped like the headers'."""

    def __init__(self, response: httpcore.Response) -> None:
        """Nothing is read here; httpx iterates when the fetcher does."""
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        """Each chunk as httpcore reads it from the deadline stream."""
        with httpx_errors():
            yield from self._response.iter_stream()

    def close(self) -> None:
        """Release the connection to the pool, or close it if the body was not read to its end."""
        self._response.close()


def _proxy_pool(
    proxy: str, ssl_context: ssl.SSLContext | None, backend: httpcore.NetworkBackend
) -> httpcore.ConnectionPool:
    """The pool for a proxied route, parsed by httpx's own `Proxy` (credentials taken out of the
    URL, an unknown scheme refused) and built as httpx's transport builds it, plus our backend."""
    parsed = httpx.Proxy(url=proxy)
    url = httpcore.URL(
        scheme=parsed.url.raw_scheme,
        host=parsed.url.raw_host,
        port=parsed.url.port,
        target=parsed.url.raw_path,
    )
    if parsed.url.scheme in ("socks5", "socks5h"):  # needs socksio, as with httpx's transport
        return httpcore.SOCKSProxy(
            proxy_url=url,
            proxy_auth=parsed.raw_auth,
            ssl_context=ssl_context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=backend,
        )
    return httpcore.HTTPProxy(
        proxy_url=url,
        proxy_auth=parsed.raw_auth,
        proxy_headers=parsed.headers.raw,
        ssl_context=ssl_context,
        proxy_ssl_context=parsed.ssl_context,
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
        keepalive_expiry=KEEPALIVE_EXPIRY,
        network_backend=backend,
    )


class DeadlineTransport(httpx.BaseTransport):
    """One route (a scheme, and a proxy or none): an httpcore pool dialling through `backend`.

    `ssl_context` None means the route never negotiates TLS with an origin: an https request
    reaching it is refused rather than verified with some other trust store."""

    def __init__(
        self,
        backend: httpcore.NetworkBackend,
        ssl_context: ssl.SSLContext | None,
        proxy: str | None = None,
    ) -> None:
        """The pool is built here; no connection is opened until the first request."""
        self.backend = backend
        self.proxy = proxy
        self._ssl_context = ssl_context
        self.pool: httpcore.ConnectionPool
        if proxy is None:
            self.pool = httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_EXPIRY,
                network_backend=backend,
            )
        else:
            self.pool = _proxy_pool(proxy, ssl_context, backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the pool; the response's headers are read, its body is not."""
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("a synchronous transport needs a synchronous request body")
        if request.url.scheme == "https" and self._ssl_context is None:
            raise httpx.UnsupportedProtocol(f"{request.url.host}: this route has no TLS context")
        outgoing = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with httpx_errors():
            answer = self.pool.handle_request(outgoing)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        """Close the pool and its kept-alive connections."""
        with httpx_errors():
            self.pool.close()


class SchemeTransport(httpx.BaseTransport):
    """Routes each request by scheme and environment proxy to a `DeadlineTransport`, built on
    first use; every one dials through the same deadline backend.

    Loading the system CA bundle costs more than a whole idle sync against a plain-http mirror,
    so only a TLS hop loads it: an https URL (a redirect to one included) or an https proxy."""

    def __init__(
        self, ca_bundle: Path | None, backend: httpcore.NetworkBackend, memo: VerificationMemo
    ) -> None:
        """The proxy variables are read once here, so every request of one client (one sync) is
        routed by the same reading."""
        self.ca_bundle = ca_bundle
        self.backend = backend
        self.memo = memo
        self.proxies = environment_proxies(memo)
        self._routes: dict[tuple[str, str | None], DeadlineTransport] = {}

    def route(self, request: httpx.Request) -> DeadlineTransport:
        """The transport for `request`'s scheme and proxy, built on first use."""
        scheme = request.url.scheme
        proxy = environment_proxy(scheme, request.url.host, self.proxies)
        transport = self._routes.get((scheme, proxy))
        if transport is None:
            if scheme == "https" or (proxy or "").startswith("https:"):
                context: ssl.SSLContext | None = tls_context(self.ca_bundle, self.memo)
            else:  # plain http, directly or through an http proxy: no TLS is ever negotiated
                context = None
            transport = DeadlineTransport(self.backend, context, proxy)
            self._routes[(scheme, proxy)] = transport
        return transport

    def routes(self) -> dict[tuple[str, str | None], DeadlineTransport]:
        """The routes built so far, by (scheme, proxy) (a copy, for inspection)."""
        return dict(self._routes)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` by its route."""
        return self.route(request).handle_request(request)

    def close(self) -> None:
        """Close every route built, and so their kept-alive connections."""
        for transport in self._routes.values():
            transport.close()
        self._routes.clear()
