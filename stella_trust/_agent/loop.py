"""The long-running refresh loop: scheduling, backoff, signals, sd_notify, the worker thread.

Each cycle is the same core the CLI uses: `sync()` (unless offline), then `load_view()`
to re-verify the cache and judge freshness. The loop only decides *when*: the interval
with jitter so a fleet does not stampede the repository, one early retry after a failure
and then the interval again (schedule.py says why), and immediate cycles on SIGUSR1. The
sync runs in a worker thread so the main thread can always answer SIGTERM within two
seconds and keep the systemd watchdog fed;
abandoning a sync mid-way is safe because the store only ever switches whole,
verified generations.

A cycle ends in exactly one of three ways, none of them a traceback: success, a refresh
failure (logged once per distinct error, then backed off; an OS error from the cache is
one of these, with a hint about permissions and free space), or, when a stop was
requested, an abandoned refresh (one INFO line: stopping is not a failure). What each cycle
says, in the journal and the metrics file, is reporting.py's.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from stella_trust._agent.metrics import AgentMetrics
from stella_trust._agent.notify import Notifier
from stella_trust._agent.reporting import CycleReporter
from stella_trust._agent.schedule import next_delay
from stella_trust._internal.cachestate import MirrorHealth
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.net.fetcher import CountingFetcher
from stella_trust._internal.reader import load_view
from stella_trust._internal.redact import redact
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.timefmt import iso
from stella_trust.errors import EXIT_OK, EXIT_UNUSABLE, InternalError, StellaError, SyncInterrupted
from stella_trust.view import TrustView

STOP_GRACE_SECONDS = 1.5  # how long a stop waits for a running sync before abandoning it
TICK_SECONDS = 0.1
CACHE_IO_HINT = "check permissions and free space on the cache {cache}; cached trust is unchanged"


def cache_io_error(exc: OSError, cache: Path) -> StellaError:
    """An OS error from the cache (read-only, not writable, full disk, a path component
    that is not a directory) as a refresh failure the operator can act on.

    It is not a bug, so not "internal error"; and it must stay a StellaError so the loop
    logs it once, backs off and keeps serving the trust already verified on disk (the store
    switches whole generations only, so a failed write never changes it).
    """
    reason = exc.strerror or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    return StellaError(f"cache I/O error: {reason}{where}", hint=CACHE_IO_HINT.format(cache=cache))


def _timestamp(moment: str | None) -> float | None:
    """Unix time of an ISO 8601 `...Z` stamp from the state file (None if absent or odd)."""
    if not moment:
        return None
    try:
        return datetime.fromisoformat(moment).timestamp()
    except ValueError:
        return None


@dataclass
class CycleOutcome:
    """What one cycle did; `exit_code` is what `trust agent --once` exits with."""

    ok: bool
    error: StellaError | None
    view: TrustView | None
    changed: bool = False
    changes: tuple[str, ...] = ()  # what the sync changed, in words (policy/changes.py)

    @property
    def exit_code(self) -> int:
        """The exit code `trust sync` would give: the error's, else 0 only for usable trust."""
        if self.error is not None:
            return self.error.exit_code
        return EXIT_OK if self.view is not None and self.view.usable else EXIT_UNUSABLE


class Agent:
    """The refresh loop; one instance per process (it owns the signal handlers)."""

    def __init__(
        self,
        load_settings: Callable[[], TrustRepoSettings],
        *,
        notifier: Notifier | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
        fetcher: Callable[[], CountingFetcher] | None = None,
    ) -> None:
        """`clock` and `fetcher` let a program embedding the agent (and the lifecycle tests,
        which run months of cycles in process) give it the time every decision is judged at
        and the transport each sync uses; by default the wall clock and the network."""
        self._load_settings = load_settings
        self.memo = VerificationMemo()  # what this agent verified, for its life (decision 14)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._fetcher = fetcher
        self.settings = load_settings()
        self.log = logger or logging.getLogger("stella_trust")
        self.notifier = notifier or Notifier(logger=self.log)
        self.rng = rng or random.Random()
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()
        self.reload_requested = False
        # Set by signal handlers, turned into events by the main loop: a handler must take
        # no lock (Event.set() in a handler deadlocks when the signal lands while this same
        # thread holds that Event's lock inside wait()).
        self._stop_signalled = False
        self._wake_signalled = False
        self.reporter = CycleReporter(self.log)
        self.last_sync: str | None = None  # last successful sync by anyone (the state file)
        self._last_ping = 0.0

    @property
    def failures(self) -> int:
        """Consecutive failed cycles: what the backoff and the status line follow."""
        return self.reporter.failures

    @property
    def last_state(self) -> str | None:
        """The freshness state last logged (None before the first cycle)."""
        return self.reporter.last_state

    @property
    def metrics(self) -> AgentMetrics:
        """What the metrics file says, updated every cycle."""
        return self.reporter.metrics

    # ---- signals ----------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads the config, SIGUSR1 refreshes now. The handlers
        only set flags (see `__init__`): the main loop turns them into events."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGUSR1, self._on_refresh)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signalled = True

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True
        self._wake_signalled = True

    def _on_refresh(self, signum: int, frame: FrameType | None) -> None:
        self._wake_signalled = True

    def _take_signals(self) -> None:
        """Main thread only: what the handlers flagged, as events (within one tick)."""
        if self._stop_signalled:
            self.stop_event.set()
            self.wake_event.set()
        if self._wake_signalled:
            self._wake_signalled = False
            self.wake_event.set()

    # ---- the loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Refresh until stopped; READY=1 after the first cycle."""
        self.log.info(
            "agent started: %s every %g min (jitter %d%%)",
            self.settings.tuf_url,
            self.settings.refresh_interval_minutes,
            round(self.settings.jitter_fraction * 100),
        )
        first = True
        while not self.stop_event.is_set():
            outcome = self._cycle_in_worker()
            if self.stop_event.is_set():
                break
            if first:
                self.notifier.ready(self.status_line())
                first = False
            else:
                self.notifier.status(self.status_line())
            delay = self.delay_after(outcome)
            self.log.debug("next refresh in %.1fs", delay)
            self._sleep(delay)
        self.notifier.stopping()
        self.log.info("agent stopping")
        return EXIT_OK

    def delay_after(self, outcome: CycleOutcome) -> float:
        """Seconds to wait after this cycle (schedule.py); public so a simulation of many agents
        (benchmarks/bench_fleet.py) follows exactly what `run` does."""
        return next_delay(self.settings, 0 if outcome.ok else max(self.failures, 1), self.rng)

    def run_once(self) -> int:
        """One cycle for timers and cron; the exit code follows `trust sync`."""
        return self.run_once_outcome().exit_code

    def run_once_outcome(self) -> CycleOutcome:
        """One cycle, with what it did (for `trust agent --once --json`)."""
        outcome = self.guarded_cycle()
        self.log.info("one-shot refresh done: %s", self.status_line())
        self.notifier.ready(self.status_line())
        return outcome

    def _cycle_in_worker(self) -> CycleOutcome:
        """Run a cycle in a daemon thread so this (main) thread keeps answering signals and
        feeding the watchdog; on a stop request, give the sync a moment, then abandon it."""
        box: list[CycleOutcome] = []
        worker = threading.Thread(target=self._worker, args=(box,), daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(TICK_SECONDS)
            self._take_signals()
            self._feed_watchdog()
            if self.stop_event.is_set():
                worker.join(STOP_GRACE_SECONDS)  # the sync checks the stop flag per chunk
                break
        outcome = box[0] if box else _Abandoned()
        if self.stop_event.is_set() and isinstance(outcome, _Abandoned):
            # Stopping is what the operator asked for, not a failure: one INFO line, whether
            # the sync noticed the stop flag itself or is still running and left behind.
            self.log.info("stopping: refresh abandoned, cached trust unchanged")
            if worker.is_alive():
                self.log.debug("the refresh thread is still running; it ends with the process")
        return outcome

    def _worker(self, box: list[CycleOutcome]) -> None:
        """The thread body. `guarded_cycle` already turns every Exception into a logged
        failure; this catches what is left (a failing log handler, say) so that Python's
        thread excepthook never prints a traceback into the journal."""
        try:
            box.append(self.guarded_cycle())
        except BaseException as exc:
            box.append(CycleOutcome(False, InternalError.wrapping(exc), None))

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._take_signals()
            if self.stop_event.is_set():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.wake_event.wait(min(TICK_SECONDS, remaining)) or self._wake_pending():
                self.wake_event.clear()
                if self.stop_event.is_set():
                    return
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload()
                    continue  # a reload alone does not force a refresh
                self.log.info("refresh requested (SIGUSR1)")
                return
            self._feed_watchdog()

    def _wake_pending(self) -> bool:
        self._take_signals()
        return self.wake_event.is_set()

    def _feed_watchdog(self) -> None:
        period = self.notifier.watchdog_seconds
        if period is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= period / 2:
            self.notifier.watchdog()
            self._last_ping = now

    def reload(self) -> None:
        """SIGHUP: adopt the new config, or keep the old one and say why."""
        self.notifier.reloading()
        try:
            self.settings = self._load_settings()
            self.log.info("configuration reloaded")
        except StellaError as exc:
            self.log.error("configuration reload failed, keeping the previous one: %s", exc.message)
        self.notifier.ready(self.status_line())

    # ---- one cycle ---------------------------------------------------------------------
    def guarded_cycle(self) -> CycleOutcome:
        """A cycle that cannot die of a bug: an unexpected exception is logged as one line
        (`internal error: ...`, traceback at debug level) and the agent keeps serving.
        An OS error that escaped `cycle` is the cache's fault, not a bug, and says so."""
        try:
            return self.cycle()
        except OSError as exc:
            error = cache_io_error(exc, self.settings.local_cache_path)
            self.log.debug("OS error in a refresh cycle", exc_info=True)
        except Exception as exc:
            error = InternalError.wrapping(exc)
            self.log.debug("internal error in a refresh cycle", exc_info=True)
        if self.stop_event.is_set():
            return _Abandoned()  # a stop tore the cycle down: not a failure to report
        self.reporter.report(error, False, None, host_kind=self.host_kind)
        return CycleOutcome(False, error, None)

    def cycle(self) -> CycleOutcome:
        """Sync (unless offline), then re-verify and judge freshness; log and export metrics."""
        settings = self.settings
        store = Store.of(settings)  # with the anchor pin the config holds, like every reader
        now = self.clock()
        self.metrics.last_attempt = now.timestamp()
        error: StellaError | None = None
        changed = False
        changes: tuple[str, ...] = ()
        if settings.network_allowed:
            try:
                result = sync(
                    settings,
                    store,
                    now=now,
                    should_stop=self.stop_event.is_set,
                    fetcher=self._fetcher() if self._fetcher is not None else None,
                    memo=self.memo,
                )
                changed, changes = result.changed, result.changes
                self.metrics.sync_duration = result.seconds
                self.metrics.last_success = now.timestamp()
                self.last_sync = iso(now)
            except StellaError as exc:
                error = exc
            except OSError as exc:  # the store's own I/O (lock, state, scratch space)
                error = cache_io_error(exc, settings.local_cache_path)
            if error is not None and (isinstance(error, SyncInterrupted) or self.stop_event.is_set()):
                # SIGTERM cut the download short: nothing failed, and the main thread says so.
                self.log.debug("refresh abandoned on a stop request: %s", error.message)
                return _Abandoned()
        # Even when the sync failed: the trust already on disk is still judged and served.
        view: TrustView | None = None
        try:
            view = load_view(settings, store, now, self.memo)
        except StellaError as exc:
            if error is None:
                error = exc
        except OSError as exc:
            if error is None:
                error = cache_io_error(exc, settings.local_cache_path)
        self._remember_last_sync(store, view)
        self.metrics.mirrors = _mirror_health(settings, store)
        self.reporter.report(error, changed, view, changes, host_kind=self.host_kind)
        self.reporter.export_metrics(view, settings.metrics_path, self.notifier.dropped)
        return CycleOutcome(error is None, error, view, changed, changes)

    def _remember_last_sync(self, store: Store, view: TrustView | None) -> None:
        """The last successful sync by anyone (this agent, an earlier run, `trust sync`,
        `init`), from the state file: a failed cycle must not make the status line claim
        `last sync never` while verified trust from an earlier sync is being served."""
        recorded = iso(view.last_sync) if view is not None else None
        if recorded is None:
            try:
                recorded = store.read_state().last_sync
            except (OSError, StellaError):  # an unreadable or edited state: the cycle said so
                recorded = None
        if recorded is not None:
            self.last_sync = recorded  # what `trust status` shows, to the microsecond
        if self.metrics.last_success is None:
            self.metrics.last_success = _timestamp(self.last_sync)

    @property
    def host_kind(self) -> str:
        """Which hints lead out of a failure on this host (errors.StellaError.hint_for)."""
        return "bundle-only" if self.settings.bundle_only else "connected"

    def status_line(self) -> str:
        """For STATUS= and the one-shot log: state, last successful sync, failure streak."""
        state = self.last_state or "unknown"
        return f"trust {state}; last sync {self.last_sync or 'never'}; {self.failures} consecutive failures"


def _mirror_health(settings: TrustRepoSettings, store: Store) -> list[MirrorHealth]:
    """Each configured mirror's recorded health, in the order a sync tries them (net/mirrors.py),
    for the metrics; none for a host without mirrors, or when state.json cannot be read."""
    if not settings.mirrors:
        return []
    try:
        recorded = {entry.url: entry for entry in store.read_state().mirrors}
    except (OSError, StellaError):  # the cycle reports an unreadable cache itself
        recorded = {}
    urls = [redact(base) for base in settings.repository_bases]
    return [recorded.get(url) or MirrorHealth(url) for url in urls]


class _Abandoned(CycleOutcome):
    """A cycle cut short by a stop request."""

    def __init__(self) -> None:
        super().__init__(False, None, None)
