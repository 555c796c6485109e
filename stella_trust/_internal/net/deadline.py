"""A whole-request deadline for the httpx fetcher, enforced below httpx.

**One deadline per request.** `download_deadline_seconds` covers everything a fetch
waits for: name resolution, TCP connect, the TLS handshake, the response headers,
every redirect hop and the body. httpx's own timeouts are per socket operation, so a
server that sends one header byte every few seconds never trips them, and a deadline
started after `send()` returns never starts at all (a sync could then hold the cache lock
far past its deadline). The deadline is therefore enforced below httpx, in the httpcore
network backend the client's connection pools dial through (backend.py's `DeadlineBackend`,
handed to httpcore's public `ConnectionPool(network_backend=...)` by transport.py). This
module is the clock both share, and imports neither httpx nor httpcore:

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
`POLL_SECONDS` whatever phase it is in.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from tuf.api import exceptions as tuf_exceptions

from stella_trust.errors import SyncInterrupted

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


def bounded_call(
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


def duplicate_socket(sock: object) -> socket.socket | None:
    """A second descriptor for the connection under `sock` (None if there is none)."""
    if not isinstance(sock, socket.socket):
        return None
    try:
        return socket.fromfd(sock.fileno(), sock.family, sock.type)
    except OSError:
        return None
