"""The agent's loop under faults of its surroundings, in process: sd_notify that cannot be
delivered, OS errors from the cache, a stop mid-sync, the status line after a failure.

The repository is the in-memory simulator (tests/unit/simulator.py) behind the agent's
real cycle: `sync` is wrapped only to hand it the simulator's fetcher, or replaced by a
function that raises the fault under test.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stella_trust._agent import loop
from stella_trust._agent.logs import RepeatFilter, error_key
from stella_trust._agent.loop import Agent, CycleOutcome
from stella_trust._agent.metrics import AgentMetrics
from stella_trust._agent.notify import Notifier
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync as real_sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import InternalError, RepositoryUnreachableError, SyncInterrupted
from tests.unit.simulator import RepositoryFetcher

Host = tuple[TrustRepoSettings, Store]
Simulated = tuple[DemoRepository, RepositoryFetcher]
ABANDONED = "stopping: refresh abandoned, cached trust unchanged"


# ---- sd_notify -------------------------------------------------------------------------------


@contextlib.contextmanager
def full_notify_socket() -> Iterator[str]:
    """A bound datagram socket nobody reads, whose queue is full (senders get EAGAIN)."""
    directory = Path(tempfile.mkdtemp(prefix="notify-"))
    address = str(directory / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            for _ in range(100_000):
                filler.sendto(b"X", address)
        yield address
    finally:
        filler.close()
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)


def sends_within(notifier: Notifier, count: int, seconds: float) -> bool:
    """True if `count` watchdog pings return within `seconds` (a blocking send never does;
    the thread is a daemon so a hang fails the test instead of the run)."""
    worker = threading.Thread(target=lambda: [notifier.watchdog() for _ in range(count)], daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


def test_notify_on_a_full_queue_drops_and_counts_instead_of_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="test-notify")
    with full_notify_socket() as address:
        notifier = Notifier({"NOTIFY_SOCKET": address}, logger=logging.getLogger("test-notify"))
        started = time.monotonic()
        assert sends_within(notifier, 50, 2.0), "sd_notify blocked on a full queue"
        assert time.monotonic() - started < 1.0
        assert notifier.dropped == 50
        assert notifier.send("STATUS=x") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Resource temporarily unavailable" in warnings[0].getMessage()


def test_notify_to_a_vanished_systemd_is_dropped_and_counted(tmp_path: Path) -> None:
    gone = tempfile.mkdtemp(prefix="notify-")
    stale = str(Path(gone) / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bound:
        bound.bind(stale)  # the file stays, nobody listens: ECONNREFUSED
    try:
        for address in (stale, str(tmp_path / "missing.sock"), "@stella-trust-nobody-here"):
            notifier = Notifier({"NOTIFY_SOCKET": address}, logger=logging.getLogger("test-notify"))
            notifier.ready("trust fresh")
            notifier.stopping()
            assert notifier.dropped == 2, address
    finally:
        shutil.rmtree(gone, ignore_errors=True)


def test_notify_still_delivers_when_systemd_reads() -> None:
    directory = Path(tempfile.mkdtemp(prefix="notify-"))
    address = str(directory / "notify.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(address)
            receiver.settimeout(1)
            notifier = Notifier({"NOTIFY_SOCKET": address})
            assert notifier.send("READY=1", "STATUS=ok") is True
            assert receiver.recv(4096) == b"READY=1\nSTATUS=ok"
            assert notifier.dropped == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_metrics_export_the_notify_drop_counter() -> None:
    text = AgentMetrics(notify_dropped=7).render()
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["stella_trust_notify_dropped_total"] == 7
    assert "# TYPE stella_trust_notify_dropped_total counter" in text


# ---- OS errors from the cache ----------------------------------------------------------------


def make_agent(settings: TrustRepoSettings, name: str = "test-agent-robustness") -> Agent:
    return Agent(lambda: settings, notifier=Notifier({}), logger=logging.getLogger(name))


def synced_host(host: Host, demo: DemoRepository) -> None:
    settings, store = host
    store.write_anchor(demo.repo.root_bytes(1))
    real_sync(settings, store, fetcher=RepositoryFetcher(demo.repo))


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_cache_os_error_is_a_logged_once_refresh_failure_and_trust_is_still_served(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings, store = host
    demo, _ = simulated
    synced_host(host, demo)
    scratch = iter(["1763-ab12cd", "1764-ef34aa", "1765-0099ff"])

    def unwritable(*args: Any, **kwargs: Any) -> None:
        where = store.root / "generations" / f".work-{next(scratch)}" / "targets"
        raise PermissionError(errno.EACCES, "Permission denied", str(where))

    monkeypatch.setattr(loop, "sync", unwritable)
    caplog.set_level(logging.INFO)
    agent = make_agent(settings)
    outcomes = [agent.guarded_cycle() for _ in range(3)]
    first = outcomes[0]
    assert first.error is not None and not isinstance(first.error, InternalError)
    assert first.error.message.startswith("cache I/O error: Permission denied: ")
    assert "check permissions and free space on the cache" in first.error.hint
    assert first.exit_code == 1
    assert first.view is not None and first.view.usable  # the verified trust is still judged
    assert agent.failures == 3
    logged = errors_logged(caplog)
    assert logged == [f"refresh failed: {first.error.message} (hint: {first.error.hint})"]


def test_an_os_error_escaping_the_cycle_is_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TrustRepoSettings(tuf_url="file:///nowhere", local_cache_path=str(tmp_path))
    agent = make_agent(settings)

    def full_disk() -> CycleOutcome:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(agent, "cycle", full_disk)
    outcome = agent.guarded_cycle()
    assert outcome.error is not None and not isinstance(outcome.error, InternalError)
    assert outcome.error.message == "cache I/O error: No space left on device"
    assert str(tmp_path) in outcome.error.hint
    assert agent.failures == 1


def test_cache_path_under_a_regular_file_fails_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real store, no mocks: ENOTDIR from the anchor read (root cannot be chmod-ed out)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = TrustRepoSettings(tuf_url="http://127.0.0.1:9/", local_cache_path=str(blocker / "cache"))
    caplog.set_level(logging.INFO)
    agent = make_agent(settings)
    outcome = agent.guarded_cycle()
    assert outcome.error is not None and not isinstance(outcome.error, InternalError)
    assert outcome.error.message.startswith("cache I/O error: Not a directory")
    assert sum("refresh failed" in m for m in errors_logged(caplog)) == 1


def test_the_worker_thread_never_prints_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TrustRepoSettings(tuf_url="file:///nowhere", local_cache_path=str(tmp_path))
    agent = make_agent(settings)
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: escaped.append(hook.exc_value))

    def broken_beyond_the_guard() -> CycleOutcome:
        raise RuntimeError("a log handler failed")

    monkeypatch.setattr(agent, "guarded_cycle", broken_beyond_the_guard)
    outcome = agent._cycle_in_worker()
    assert escaped == []
    assert isinstance(outcome.error, InternalError)


def test_repeated_core_warnings_are_shown_once_until_a_success() -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.levelname} {record.getMessage()}")

    repeats = RepeatFilter(own_logger="test-repeat-owner")
    handler = Collect()
    handler.addFilter(repeats)
    core = logging.getLogger("test-repeat-owner.core")
    core.addHandler(handler)
    core.propagate = False
    try:
        for token in ("aa11", "bb22", "cc33"):
            core.warning("could not record the failure in /c/.state.json.%s.tmp: full", token)
        logging.getLogger("test-repeat-owner").addHandler(handler)
        assert seen == ["WARNING could not record the failure in /c/.state.json.aa11.tmp: full"]
        repeats.reset()
        core.warning("could not record the failure in /c/.state.json.dd44.tmp: full")
        assert len(seen) == 2
    finally:
        core.removeHandler(handler)
        logging.getLogger("test-repeat-owner").removeHandler(handler)
    assert error_key("x /c/generations/.work-1-ab/t") == error_key("x /c/generations/.work-2-cd/t")
    assert error_key("Repository unreachable: a") != error_key("Repository unreachable: b")


# ---- a stop mid-sync; the status line after a failure ----------------------------------------


def test_a_stop_mid_sync_is_one_info_line_not_two_errors(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings, _ = host
    synced_host(host, simulated[0])
    agent = make_agent(settings)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        agent.stop_event.set()  # SIGTERM arrives while the download runs
        raise SyncInterrupted("Sync interrupted by a stop request", hint="cached trust is unchanged")

    monkeypatch.setattr(loop, "sync", interrupted)
    caplog.set_level(logging.DEBUG)
    outcome = agent._cycle_in_worker()
    assert not outcome.ok and outcome.error is None
    assert errors_logged(caplog) == []
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in infos] == [ABANDONED]
    assert agent.failures == 0 and agent.last_state is None


def test_status_line_shows_the_last_successful_sync_after_a_failure(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = host
    synced_host(host, simulated[0])
    last_sync = store.read_state().last_sync
    assert last_sync is not None

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise RepositoryUnreachableError("Repository unreachable: connection refused")

    monkeypatch.setattr(loop, "sync", unreachable)
    agent = make_agent(settings)  # a fresh agent: its own process never synced
    assert not agent.guarded_cycle().ok
    line = agent.status_line()
    assert line == f"trust fresh; last sync {last_sync}; 1 consecutive failures"
    expected = datetime.fromisoformat(last_sync).timestamp()
    assert agent.metrics.last_success is not None and abs(agent.metrics.last_success - expected) < 1


def test_a_successful_cycle_still_works_end_to_end(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The unchanged path, through the same wrapper: sync with the simulator, view, report."""
    settings, store = host
    demo, _ = simulated
    store.write_anchor(demo.repo.root_bytes(1))

    def simulated_sync(s: TrustRepoSettings, st: Store, **kwargs: Any) -> Any:
        return real_sync(s, st, **{**kwargs, "fetcher": RepositoryFetcher(demo.repo)})

    monkeypatch.setattr(loop, "sync", simulated_sync)
    caplog.set_level(logging.INFO)
    agent = make_agent(settings)
    outcome = agent.guarded_cycle()
    assert outcome.ok and outcome.changed and outcome.exit_code == 0
    assert errors_logged(caplog) == []
    assert f"last sync {store.read_state().last_sync};" in agent.status_line()


def test_signal_handlers_take_no_lock(tmp_path: Path) -> None:
    """A SIGTERM landing while the main thread holds the wake event's lock (inside wait())
    must not deadlock: the handler only flags, the loop turns flags into events."""
    import signal as signals
    import threading

    from stella_trust._agent.loop import Agent
    from stella_trust._internal.settings import TrustRepoSettings

    settings = TrustRepoSettings(tuf_url="file:///nowhere", local_cache_path=tmp_path)
    agent = Agent(lambda: settings, logger=logging.getLogger("test-signals"))
    done = threading.Event()

    def handler_inside_wait() -> None:
        with agent.wake_event._cond:
            agent._on_stop(signals.SIGTERM, None)
        done.set()

    thread = threading.Thread(target=handler_inside_wait, daemon=True)
    thread.start()
    assert done.wait(2), "the signal handler blocked on the wake event's lock"
    agent._take_signals()
    assert agent.stop_event.is_set() and agent.wake_event.is_set()


def test_an_unwritable_metrics_file_is_warned_about_once_then_its_recovery_once(
    host: Host, simulated: Simulated, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21: the "cannot write metrics" warning repeated every cycle."""
    settings, store = host
    demo, _ = simulated
    store.write_anchor(demo.repo.root_bytes(1))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    metrics = settings.model_copy(update={"metrics_path": blocker / "stella_trust.prom"})
    agent = Agent(
        lambda: metrics,
        notifier=Notifier({}),
        logger=logging.getLogger("test-metrics-once"),
        fetcher=lambda: RepositoryFetcher(demo.repo),
    )
    caplog.set_level(logging.INFO)
    for _ in range(4):
        assert agent.guarded_cycle().ok
    warnings = [r.getMessage() for r in caplog.records if "cannot write metrics" in r.getMessage()]
    assert len(warnings) == 1
    blocker.unlink()
    blocker.mkdir()
    for _ in range(2):
        assert agent.guarded_cycle().ok
    assert (blocker / "stella_trust.prom").is_file()
    assert sum("metrics written to" in r.getMessage() for r in caplog.records) == 1
