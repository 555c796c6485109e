"""httpcore's socket backend with every wait bounded by the request in flight (deadline.py).

`DeadlineBackend` is handed to httpcore's public `ConnectionPool(network_backend=...)` by
transport.py, so every connection a fetch opens, direct or through a proxy, dials, handshakes,
reads and writes through `DeadlineStream`: a server that dribbles one byte at a time is cut at
the whole-request deadline, and a stop request ends any wait within `POLL_SECONDS`. This
module imports httpcore, so it is imported only by a fetch that goes to the network (commands
that fetch nothing, `trust status` or `--help`, never pay for it).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from stella_trust._internal.net.deadline import Budget, bounded_call, duplicate_socket

__all__ = ["DeadlineBackend", "DeadlineStream"]


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait honours the current request's deadline and stop flag."""

    def __init__(self, inner: httpcore.NetworkStream, budget: Budget) -> None:
        """The budget is asked at every wait, never read once here: a kept-alive connection
        serves later requests with their own deadlines."""
        self._inner = inner
        self._budget = budget

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Wait in slices of at most `POLL_SECONDS`, keeping httpx's per-read `timeout` across
        them; a slice that times out consumed nothing, so it is simply repeated after the stop
        flag and the deadline are looked at."""
        started = time.monotonic()
        while True:
            wait = self._budget.step()
            if timeout is not None:
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    raise httpcore.ReadTimeout(f"no data for {timeout:g}s")
                wait = min(wait, left)
            try:
                return self._inner.read(max_bytes, wait)
            except httpcore.ReadTimeout:
                continue  # nothing was consumed: look at the clock and the flag, wait again

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send one request, bounded by what the deadline leaves."""
        # Requests are a few hundred bytes: bounding the one write is enough.
        self._inner.write(buffer, self._budget.clamp(timeout))

    def close(self) -> None:
        """Close the wrapped connection."""
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """The TLS handshake, which cannot be sliced, on a helper thread; a stop or the deadline
        ends it by shutting down a duplicate of its socket."""
        inner = self._inner
        limit = self._budget.clamp(timeout)
        # The handshake detaches the socket object it wraps, so a handle on the
        # connection is taken first: a duplicate descriptor, ours to shut down (which
        # wakes the handshake blocked in recv()) and to close, whatever happens to the
        # original.
        twin = duplicate_socket(inner.get_extra_info("socket"))

        def shut_down() -> None:
            """Wake a handshake blocked in recv() by shutting the connection down under it (the
            duplicate is ours to shut down)."""
            if twin is not None:
                with contextlib.suppress(OSError):
                    twin.shutdown(socket.SHUT_RDWR)

        try:
            tls = bounded_call(
                self._budget,
                lambda: inner.start_tls(ssl_context, server_hostname, limit),
                lambda stream: stream.close(),
                shut_down,
            )
        finally:
            if twin is not None:
                twin.close()
        return DeadlineStream(tls, self._budget)

    def get_extra_info(self, info: str) -> Any:
        """httpcore's questions about the socket and TLS, answered by the wrapped stream."""
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with every connection bounded by the request deadline."""

    def __init__(self, budget: Budget) -> None:
        """Dial with httpcore's own socket backend; only the waiting is ours."""
        self._budget = budget
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """DNS and connect on a helper thread, so the stop flag and the deadline end the wait; a
        connection that arrives after the wait ended is closed."""
        limit = self._budget.clamp(timeout)
        stream = bounded_call(
            self._budget,
            lambda: self._sockets.connect_tcp(host, port, limit, local_address, socket_options),
            lambda opened: opened.close(),
        )
        return DeadlineStream(stream, self._budget)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """The same bounded dial for a Unix socket (part of httpcore's backend interface)."""
        limit = self._budget.clamp(timeout)
        stream = bounded_call(
            self._budget,
            lambda: self._sockets.connect_unix_socket(path, limit, socket_options),
            lambda opened: opened.close(),
        )
        return DeadlineStream(stream, self._budget)

    def sleep(self, seconds: float) -> None:
        """httpcore's pause between connect retries; the transports here configure none, so
        nothing waits here unbounded."""
        time.sleep(seconds)
