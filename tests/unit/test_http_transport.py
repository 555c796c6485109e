"""The client's transport is ours, on httpcore's public pools, and keeps every rule it had.

- every route (direct, through an HTTP proxy, through a CONNECT tunnel) is a `DeadlineTransport`
  whose pool dials through the deadline backend: no httpx transport, no private attribute;
- a proxy that dribbles, and an origin that dribbles behind a TLS tunnel, are cut at the
  whole-request deadline, like a direct server;
- failures reach callers as the same httpx exceptions with the same messages as httpx's own
  transport gives (the fetcher's `DownloadError` text is built from them).

Servers are raw sockets on 127.0.0.1 in this process (test_fetcher_deadlines.RawServer).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tuf.api import exceptions as tuf_exceptions

from stella_trust._internal.net.backend import DeadlineBackend
from stella_trust._internal.net.deadline import Budget
from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust._internal.net.transport import DeadlineTransport
from tests.unit.test_fetcher_deadlines import (
    HANDLER_LIMIT_SECONDS,
    Handler,
    RawServer,
    answer_ok,
    dribble_headers,
)
from tests.unit.test_tls_context import make_ca, pem

ORIGIN = "tuf.example.invalid"  # never resolved: every request here goes to a proxy


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        server = RawServer(handler).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[RawServer], None]:
    """Name `server` as the environment's proxy for http and https, with no exceptions."""

    def use(server: RawServer) -> None:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, server.url)

    return use


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host:port the deadline backend dials, in order."""
    seen: list[str] = []
    original = DeadlineBackend.connect_tcp

    def counting(self: DeadlineBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        seen.append(f"{host}:{port}")
        return original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(DeadlineBackend, "connect_tcp", counting)
    return seen


def test_a_direct_route_is_our_transport_on_httpcores_public_pool(
    serve: Callable[[Handler], RawServer], dials: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = serve(answer_ok)
    with HttpxFetcher(timeout=5, deadline=5) as fetcher:
        assert fetcher.download_bytes(f"{server.url}/metadata/timestamp.json", 100) == b"{}"
        assert fetcher.transport is not None
        routes = fetcher.transport.routes()
        assert list(routes) == [("http", None)]
        route = routes[("http", None)]
        assert isinstance(route, DeadlineTransport) and not isinstance(route, httpx.HTTPTransport)
        assert type(route.pool) is httpcore.ConnectionPool
        assert isinstance(route.backend, DeadlineBackend)
    assert dials == [server.url.removeprefix("http://")]  # the pool dialled through our backend
    assert fetcher.transport is None  # closed with the client


def test_a_proxied_route_is_an_httpcore_proxy_pool_on_the_same_backend(
    serve: Callable[[Handler], RawServer], proxy_env: Callable[[RawServer], None], dials: list[str]
) -> None:
    proxy = serve(answer_ok)
    proxy_env(proxy)
    with HttpxFetcher(timeout=5, deadline=5) as fetcher:
        assert fetcher.download_bytes(f"http://{ORIGIN}/metadata/timestamp.json", 100) == b"{}"
        assert fetcher.transport is not None
        route = fetcher.transport.routes()[("http", proxy.url)]
        assert type(route.pool) is httpcore.HTTPProxy
        assert isinstance(route.backend, DeadlineBackend)
    assert proxy.requests[0].startswith(f"GET http://{ORIGIN}/metadata/timestamp.json ".encode())
    assert dials == [proxy.url.removeprefix("http://")]


def test_a_proxy_dribbling_its_connect_answer_is_cut_at_the_deadline(
    serve: Callable[[Handler], RawServer], proxy_env: Callable[[RawServer], None]
) -> None:
    proxy = serve(dribble_headers)
    proxy_env(proxy)
    started = time.monotonic()
    with (
        HttpxFetcher(timeout=5, deadline=1) as fetcher,
        pytest.raises(tuf_exceptions.SlowRetrievalError) as caught,
    ):
        fetcher.download_bytes(f"https://{ORIGIN}/metadata/timestamp.json", 16_384)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"a dribbling CONNECT took {elapsed:.2f}s with a 1s deadline"
    assert "timestamp.json" in str(caught.value)
    assert proxy.requests[0].startswith(f"CONNECT {ORIGIN}:443 ".encode())


def _origin_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS server context for ORIGIN, and a CA bundle file that trusts it."""
    ca_key, ca = make_ca("tunnel test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ORIGIN)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ORIGIN)]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path, bundle = directory / "origin.pem", directory / "origin.key", directory / "ca.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    bundle.write_bytes(pem(ca))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, bundle


def tunnel_to(context: ssl.SSLContext, then: Handler) -> Handler:
    """A CONNECT proxy that is itself the origin: it accepts the tunnel, speaks TLS as ORIGIN
    inside it, reads the request head and hands the TLS socket to `then`."""

    def handle(sock: socket.socket, head: bytes, stopping: threading.Event) -> None:
        assert head.startswith(f"CONNECT {ORIGIN}:443 ".encode())
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with context.wrap_socket(sock, server_side=True) as tls:
            inner = b""
            while b"\r\n\r\n" not in inner:
                data = tls.recv(4096)
                if not data:
                    return
                inner += data
            then(tls, inner, stopping)

    return handle


def test_an_origin_behind_a_tls_tunnel_is_verified_with_the_ca_bundle_and_downloads(
    serve: Callable[[Handler], RawServer], proxy_env: Callable[[RawServer], None], tmp_path: Path
) -> None:
    context, bundle = _origin_context(tmp_path)
    proxy = serve(tunnel_to(context, answer_ok))
    proxy_env(proxy)
    url = f"https://{ORIGIN}/metadata/timestamp.json"
    with HttpxFetcher(timeout=5, deadline=5, ca_bundle=bundle) as fetcher:
        assert fetcher.download_bytes(url, 100) == b"{}"
        assert fetcher.transport is not None
        assert type(fetcher.transport.routes()[("https", proxy.url)].pool) is httpcore.HTTPProxy

    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(pem(make_ca("another CA")[1]))
    with (
        HttpxFetcher(timeout=5, deadline=5, ca_bundle=stranger) as fetcher,
        pytest.raises(tuf_exceptions.DownloadError) as caught,
    ):
        fetcher.download_bytes(url, 100)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_an_origin_dribbling_behind_a_tls_tunnel_is_cut_at_the_deadline(
    serve: Callable[[Handler], RawServer], proxy_env: Callable[[RawServer], None], tmp_path: Path
) -> None:
    context, bundle = _origin_context(tmp_path)
    proxy = serve(tunnel_to(context, dribble_headers))
    proxy_env(proxy)
    started = time.monotonic()
    with (
        HttpxFetcher(timeout=5, deadline=1, ca_bundle=bundle) as fetcher,
        pytest.raises(tuf_exceptions.SlowRetrievalError),
    ):
        fetcher.download_bytes(f"https://{ORIGIN}/metadata/timestamp.json", 16_384)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"a dribbling tunnelled origin took {elapsed:.2f}s with a 1s deadline"
    assert elapsed < HANDLER_LIMIT_SECONDS


def truncated_body(sock: socket.socket, _head: bytes, _stopping: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")


def garbage_status(sock: socket.socket, _head: bytes, _stopping: threading.Event) -> None:
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")


def silent(sock: socket.socket, _head: bytes, stopping: threading.Event) -> None:
    stopping.wait(HANDLER_LIMIT_SECONDS)


def _failure(client: httpx.Client, url: str) -> tuple[type[BaseException], str]:
    with pytest.raises(httpx.HTTPError) as caught, client.stream("GET", url) as response:
        for _ in response.iter_raw():
            pass
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize(
    "handler",
    [truncated_body, garbage_status, None],
    ids=["truncated-body", "garbage-status", "refused"],
)
def test_failures_are_the_same_httpx_exceptions_and_messages_as_httpxs_own_transport(
    serve: Callable[[Handler], RawServer], handler: Handler | None
) -> None:
    if handler is None:  # a port nothing listens on: bind one, and close it unused
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}/x"
    else:
        url = f"{serve(handler).url}/x"
    timeout = httpx.Timeout(0.5)
    ours = DeadlineTransport(DeadlineBackend(Budget(None)), None)
    with (
        httpx.Client(transport=ours, timeout=timeout) as client,
        httpx.Client(transport=httpx.HTTPTransport(), timeout=timeout) as reference,
    ):
        expected = _failure(reference, url)
        assert _failure(client, url) == expected
    assert issubclass(expected[0], httpx.TransportError)


def test_a_read_timeout_is_httpxs_read_timeout_with_the_backends_words(
    serve: Callable[[Handler], RawServer],
) -> None:
    """httpx's per-read timeout, kept across the deadline backend's slices, is still
    `httpx.ReadTimeout` (the fetcher turns every `TimeoutException` into a slow retrieval)."""
    url = f"{serve(silent).url}/x"
    ours = DeadlineTransport(DeadlineBackend(Budget(None)), None)
    with httpx.Client(transport=ours, timeout=httpx.Timeout(0.5)) as client:
        assert _failure(client, url) == (httpx.ReadTimeout, "no data for 0.5s")


def test_an_https_request_on_a_route_without_tls_is_refused() -> None:
    """The plain-http route holds no TLS context: it refuses rather than verify with another store."""
    ours = DeadlineTransport(DeadlineBackend(Budget(None)), None)
    with httpx.Client(transport=ours) as client, pytest.raises(httpx.UnsupportedProtocol):
        client.get(f"https://{ORIGIN}/x")
