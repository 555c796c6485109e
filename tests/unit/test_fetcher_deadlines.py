"""The fetcher's whole-request deadline, stop flag and refusal of compressed responses.

Each test runs a tiny raw-socket HTTP server on 127.0.0.1 in this process (a thread per
connection, every handler bounded in time), because the failures under test live below
HTTP: a status line followed by headers dribbled a byte at a time, a server that goes
silent, a gzip bomb answering `Accept-Encoding: identity`.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tuf.api import exceptions as tuf_exceptions

from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust._internal.tuf.errors import translate
from stella_trust.errors import SyncInterrupted

# Every handler gives up after this long, so a fetcher that ignores its deadline makes the
# test fail on timing instead of hanging the run.
HANDLER_LIMIT_SECONDS = 6.0

Handler = Callable[[socket.socket, bytes, threading.Event], None]


class RawServer:
    """Accepts connections and hands each one (after reading the request head) to `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.stopping = threading.Event()
        outer = self

        class _Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(HANDLER_LIMIT_SECONDS)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        data = sock.recv(4096)
                        if not data:
                            return
                        head += data
                    outer.requests.append(head)
                    outer.handler(sock, head, outer.stopping)
                except OSError:
                    return  # the client hung up: exactly what a cut request does

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def dribble_headers(sock: socket.socket, _head: bytes, stopping: threading.Event) -> None:
    """The status line at once, then one header byte per 0.2 s (never a blank line)."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    ends = time.monotonic() + HANDLER_LIMIT_SECONDS
    while time.monotonic() < ends and not stopping.wait(0.2):
        sock.sendall(b"a")


def silent_after_status(sock: socket.socket, _head: bytes, stopping: threading.Event) -> None:
    """The status line, then nothing: only a timeout or the deadline ends the wait."""
    sock.sendall(b"HTTP/1.1 200 OK\r\n")
    stopping.wait(HANDLER_LIMIT_SECONDS)


def slow_headers_then_slow_body(sock: socket.socket, _head: bytes, stopping: threading.Event) -> None:
    """0.7 s of headers, then 0.7 s of body: each phase is inside a 1 s deadline, the sum is not."""
    sock.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(7):
        if stopping.wait(0.1):
            return
        sock.sendall(b"X-Pad: 1\r\n")
    sock.sendall(b"Content-Length: 8\r\n\r\n")
    for _ in range(7):
        if stopping.wait(0.1):
            return
        sock.sendall(b"a")
    sock.sendall(b"a")


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


@pytest.mark.parametrize("handler", [dribble_headers, silent_after_status], ids=["dribble", "silent"])
def test_header_wait_is_cut_at_the_deadline(serve: Callable[[Handler], RawServer], handler: Handler) -> None:
    server = serve(handler)
    started = time.monotonic()
    with (
        HttpxFetcher(timeout=5, deadline=1) as fetcher,
        pytest.raises(tuf_exceptions.SlowRetrievalError) as caught,
    ):
        fetcher.download_bytes(f"{server.url}/metadata/timestamp.json", 16_384)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"header wait took {elapsed:.2f}s with a 1s deadline"
    assert "timestamp.json" in str(caught.value)


def test_one_deadline_covers_headers_and_body(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(slow_headers_then_slow_body)
    started = time.monotonic()
    with HttpxFetcher(timeout=5, deadline=1) as fetcher, pytest.raises(tuf_exceptions.SlowRetrievalError):
        fetcher.download_bytes(f"{server.url}/metadata/timestamp.json", 16_384)
    assert time.monotonic() - started < 2.0


def test_a_deadline_that_is_met_still_downloads(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(slow_headers_then_slow_body)
    with HttpxFetcher(timeout=5, deadline=5) as fetcher:
        assert fetcher.download_bytes(f"{server.url}/metadata/timestamp.json", 16_384) == b"a" * 8
        assert fetcher.requests == 1
        assert fetcher.bytes_received == 8


@pytest.mark.parametrize("handler", [dribble_headers, silent_after_status], ids=["dribble", "silent"])
def test_stop_flag_ends_the_header_wait(serve: Callable[[Handler], RawServer], handler: Handler) -> None:
    server = serve(handler)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        with (
            HttpxFetcher(timeout=30, deadline=30, should_stop=stop.is_set) as fetcher,
            pytest.raises(tuf_exceptions.DownloadError) as caught,
        ):
            fetcher.download_bytes(f"{server.url}/metadata/timestamp.json", 16_384)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + 1.5, f"stop took {elapsed - 0.3:.2f}s to be noticed"
    assert isinstance(translate(caught.value, server.url), SyncInterrupted)


def test_stop_flag_ends_a_hanging_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution and TCP connect cannot be sliced; they must still not outlive a stop."""
    import httpcore

    release = threading.Event()

    def hang(self: Any, host: str, port: int, timeout: float | None = None, *_: Any, **__: Any) -> Any:
        release.wait(timeout or 10)
        raise httpcore.ConnectTimeout("hung")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", hang)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        with (
            HttpxFetcher(timeout=10, deadline=30, should_stop=stop.is_set) as fetcher,
            pytest.raises(tuf_exceptions.DownloadError) as caught,
        ):
            fetcher.download_bytes("http://127.0.0.1:9/metadata/timestamp.json", 16_384)
    finally:
        timer.cancel()
        release.set()
    assert time.monotonic() - started < 0.3 + 1.5
    assert isinstance(translate(caught.value, "http://127.0.0.1:9"), SyncInterrupted)


def test_hanging_connect_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpcore

    release = threading.Event()

    def hang(self: Any, host: str, port: int, timeout: float | None = None, *_: Any, **__: Any) -> Any:
        release.wait(timeout or 10)
        raise httpcore.ConnectTimeout("hung")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", hang)
    started = time.monotonic()
    try:
        with (
            HttpxFetcher(timeout=10, deadline=1) as fetcher,
            pytest.raises(tuf_exceptions.SlowRetrievalError),
        ):
            fetcher.download_bytes("http://127.0.0.1:9/metadata/timestamp.json", 16_384)
    finally:
        release.set()
    assert time.monotonic() - started < 2.5


BOMB_INFLATED = 100 * 1024 * 1024


def gzip_bomb() -> bytes:
    """A gzip member that inflates to 100 MB of zeros (~100 KB), built without 100 MB in memory."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [deflate.compress(block) for _ in range(BOMB_INFLATED // len(block))]
    parts.append(deflate.flush())
    return b"".join(parts)


def test_gzip_bomb_is_refused_without_inflating(serve: Callable[[Handler], RawServer]) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 200_000

    def answer(sock: socket.socket, _head: bytes, _stopping: threading.Event) -> None:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )

    server = serve(answer)
    tracemalloc.start()
    try:
        started = time.monotonic()
        with (
            HttpxFetcher(timeout=5, deadline=10) as fetcher,
            pytest.raises(tuf_exceptions.DownloadError) as caught,
        ):
            fetcher.download_bytes(f"{server.url}/metadata/timestamp.json", 16_384)
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, (
        f"peak Python allocations {peak / 2**20:.1f} MiB while refusing a gzip bomb"
    )
    assert elapsed < 2.0
    assert "Content-Encoding" in str(caught.value)
    assert not isinstance(caught.value, tuf_exceptions.DownloadLengthMismatchError)
    assert b"accept-encoding: identity" in server.requests[0].lower()


def test_stop_flag_ends_a_tls_handshake_the_server_never_answers(
    serve: Callable[[Handler], RawServer],
) -> None:
    """A TLS handshake cannot be sliced either: it is abandoned and its socket shut down."""
    server = serve(lambda sock, head, stopping: stopping.wait(HANDLER_LIMIT_SECONDS))
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    url = server.url.replace("http://", "https://") + "/metadata/timestamp.json"
    started = time.monotonic()
    timer.start()
    try:
        with (
            HttpxFetcher(timeout=30, deadline=30, should_stop=stop.is_set) as fetcher,
            pytest.raises(tuf_exceptions.DownloadError) as caught,
        ):
            fetcher.download_bytes(url, 16_384)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 0.3 + 1.5
    assert isinstance(translate(caught.value, url), SyncInterrupted)
    # the abandoned handshake's thread ends once its socket is shut down: join it (well
    # before the server's own HANDLER_LIMIT_SECONDS could release it instead)
    for helper in [t for t in threading.enumerate() if t.name == "stella-trust-connect"]:
        helper.join(timeout=HANDLER_LIMIT_SECONDS / 2)
        assert not helper.is_alive(), "the abandoned handshake thread is still blocked"


def answer_ok(sock: socket.socket, _head: bytes, _stopping: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> Callable[[RawServer], None]:
    """Route plain-http requests through `server` as the environment's proxy."""

    def use(server: RawServer) -> None:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server.url)
        monkeypatch.setenv("http_proxy", server.url)

    return use


def test_the_environment_proxy_is_used(
    serve: Callable[[Handler], RawServer], proxied: Callable[[RawServer], None]
) -> None:
    proxy = serve(answer_ok)
    proxied(proxy)
    with HttpxFetcher(timeout=5, deadline=5) as fetcher:
        assert fetcher.download_bytes("http://tuf.example.invalid/metadata/timestamp.json", 100) == b"{}"
    assert proxy.requests[0].startswith(b"GET http://tuf.example.invalid/metadata/timestamp.json ")


def test_a_dribbling_proxy_is_cut_at_the_deadline(
    serve: Callable[[Handler], RawServer], proxied: Callable[[RawServer], None]
) -> None:
    proxied(serve(dribble_headers))
    started = time.monotonic()
    with (
        HttpxFetcher(timeout=5, deadline=1) as fetcher,
        pytest.raises(tuf_exceptions.SlowRetrievalError),
    ):
        fetcher.download_bytes("http://tuf.example.invalid/metadata/timestamp.json", 16_384)
    assert time.monotonic() - started < 2.5
