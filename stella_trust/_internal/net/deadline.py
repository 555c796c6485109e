"""A whole-request deadline for the httpx fetcher, enforced below httpx.

**One deadline per request.** `download_deadline_seconds` covers everything a fetch
waits for: name resolution, TCP connect, the TLS handshake, the response headers,
every redirect hop and the body. httpx's own timeouts are per socket operation, so a
server that sends one header byte every few seconds never trips them, and a deadline
started after `send()` returns never starts at all (a sync could then hold the cache lock
far past its deadline). The deadline is therefore enforced below httpx, in the httpcore
network backend the client's connection pools use (`DeadlineBackend`):

- socket reads wait in slices of at most `POLL_SECONDS`; between slices the stop flag
  and the deadline are checked (a read that times out consumed nothing, so it is simply
  repeated — also for TLS, whose partial records stay buffered in OpenSSL);
- connect (with DNS) and the TLS handshake cannot be sliced, so they run on a short-lived
  helper thread while the fetch waits in slices; when the fetch gives up, a finished
  connection is closed, a handshake in progress has its socket shut down, and a connect
  still resolving or dialling ends by itself within its own connect timeout.

Running out of time raises python-tuf's `SlowRetrievalError`; the stop flag raises
`SyncInterrupted` (wrapped by python-tuf's `fetch()` when it fires during `_fetch`, and
unwrapped again by `tuf.errors.translate`). So SIGTERM stops a fetch within
`POLL_SECONDS` whatever phase it is in. httpx has no public option for the network
backend: it is set on the pools httpx builds (`_compat_httpx.use_backend`), and a future
httpx that renames those attributes makes every fetch fail loudly rather than run without
deadlines.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from tuf.api import exceptions as tuf_exceptions

from stella_trust.errors import SyncInterrupted

if TYPE_CHECKING:
    import httpcore

# The longest a fetch blocks without looking at the stop flag and its deadline.
POLL_SECONDS = 0.25

T = TypeVar("T")


class Budget:
    """The time left to the request in flight, shared by the fetcher and its sockets.

    One object per fetcher: keep-alive connections outlive a request, so their streams
    ask this object about whichever request is current rather than capturing a deadline.
    """

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        """No request is in flight until `start`; `should_stop` is polled at every wait."""
        self.should_stop = should_stop
        self.url = ""
        self.seconds = 0.0
        self._deadline_at: float | None = None
        self._token = 0

    def start(self, url: str, seconds: float) -> int:
        """Begin a request's allowance; the token lets only that request end it."""
        self._token += 1
        self.url = url
        self.seconds = seconds
        self._deadline_at = time.monotonic() + seconds
        return self._token

    def finish(self, token: int) -> None:
        """End the allowance, unless a later request has started since: a body generator closed late
        must not lift the deadline of the request that followed it."""
        if token == self._token:
            self._deadline_at = None

    def check_stop(self) -> None:
        """Raise `SyncInterrupted` once a stop was requested (the agent's stop event, set by
        SIGTERM), so no wait outlives the request by more than `POLL_SECONDS`."""
        if self.should_stop is not None and self.should_stop():
            raise SyncInterrupted("Sync interrupted by a stop request", hint="cached trust is unchanged")

    def remaining(self) -> float | None:
        """Seconds left (None outside a request); raises once the request must end."""
        self.check_stop()
        if self._deadline_at is None:
            return None
        left = self._deadline_at - time.monotonic()
        if left <= 0:
            raise tuf_exceptions.SlowRetrievalError(f"{self.url}: not complete after {self.seconds:g}s")
        return left

    def step(self) -> float:
        """How long one blocking wait may last before the stop flag and deadline are rechecked."""
        left = self.remaining()
        return POLL_SECONDS if left is None else min(POLL_SECONDS, left)

    def clamp(self, timeout: float | None) -> float | None:
        """An httpx per-operation timeout, shortened to what the deadline leaves."""
        left = self.remaining()
        if left is None:
            return timeout
        return left if timeout is None else min(timeout, left)


class _Outcome(Generic[T]):
    """What a helper thread produced, and whether anyone still wants it."""

    def __init__(self) -> None:
        """Nothing produced yet; `abandoned` is set, under the lock, when the waiter gives up."""
        self.value: T | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.abandoned = False


def _bounded_call(
    budget: Budget,
    call: Callable[[], T],
    discard: Callable[[T], object],
    abort: Callable[[], object] | None = None,
) -> T:
    """Run a blocking step that cannot be sliced (DNS and connect, a TLS handshake) on a
    helper thread, waiting for it in `POLL_SECONDS` slices so a stop request or the
    deadline ends the wait. If the wait ends first, `abort` interrupts the step if it can
    and `discard` releases whatever it produces; the daemon thread never blocks exit."""
    lock = threading.Lock()
    done = threading.Event()
    outcome: _Outcome[T] = _Outcome()

    def run() -> None:
        """The helper thread: hand the result over, or release it at once if the waiter has already
        given up (no connection is left open behind a stopped fetch)."""
        try:
            value = call()
        except BaseException as exc:
            with lock:
                outcome.error = exc
                done.set()
            return
        with lock:
            if not outcome.abandoned:
                outcome.value, outcome.finished = value, True
                done.set()
                return
        discard(value)

    budget.check_stop()
    threading.Thread(target=run, name="stella-trust-connect", daemon=True).start()
    try:
        while not done.wait(budget.step()):
            pass
    except BaseException:
        with lock:
            outcome.abandoned = True
            finished, value = outcome.finished, outcome.value
        if finished:
            discard(cast(T, value))
        elif abort is not None:
            abort()
        raise
    if outcome.error is not None:
        raise outcome.error
    return cast(T, outcome.value)


def _duplicate(sock: object) -> socket.socket | None:
    """A second descriptor for the connection under `sock` (None if there is none)."""
    if not isinstance(sock, socket.socket):
        return None
    try:
        return socket.fromfd(sock.fileno(), sock.family, sock.type)
    except OSError:
        return None


@functools.cache
def _deadline_backend_class() -> type:
    """The backend classes, defined on first use: they subclass httpcore's, and commands that fetch
    nothing (`trust status`, `--help`) must not pay for importing httpcore."""
    import httpcore

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
            twin = _duplicate(inner.get_extra_info("socket"))

            def shut_down() -> None:
                """Wake a handshake blocked in recv() by shutting the connection down under it (the
                duplicate is ours to shut down)."""
                if twin is not None:
                    with contextlib.suppress(OSError):
                        twin.shutdown(socket.SHUT_RDWR)

            try:
                tls = _bounded_call(
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
            stream = _bounded_call(
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
            stream = _bounded_call(
                self._budget,
                lambda: self._sockets.connect_unix_socket(path, limit, socket_options),
                lambda opened: opened.close(),
            )
            return DeadlineStream(stream, self._budget)

        def sleep(self, seconds: float) -> None:
            """httpcore's pause between connect retries; the transports here configure none, so
            nothing waits here unbounded."""
            time.sleep(seconds)

    return DeadlineBackend


def deadline_backend(budget: Budget) -> httpcore.NetworkBackend:
    """A network backend whose every wait is bounded by `budget` (the class is built lazily)."""
    backend: httpcore.NetworkBackend = _deadline_backend_class()(budget)
    return backend
