"""The agent as a real process under faults of its surroundings, not of the repository:
a systemd that stops reading NOTIFY_SOCKET, a cache it cannot write, a full disk, a stop
in the middle of a download, a failed cycle after an earlier success.

Tests run as root here, so `chmod` cannot make the cache unwritable. The cache faults are
made with: a cache path whose parent is a regular file (ENOTDIR; works for any user), a
read-only bind mount of the cache (EROFS, root only) and a 1 MiB tmpfs filled up
(ENOSPC, root only). The last two are skipped where mounting is not permitted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client
from tests.e2e.test_agent import FAST, AgentProcess, agents, wait_for

__all__ = ["agents"]  # the fixture, imported so pytest finds it here

HINT = "check permissions and free space on the cache"
ABANDONED = "stopping: refresh abandoned, cached trust unchanged"


def metric(path: Path, name: str) -> float | None:
    """One unlabelled sample from the agent's textfile, or None if absent."""
    if not path.exists():
        return None
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return None


def targets_version(client: Client) -> int:
    return int(ok(client.status()).json()["metadata"]["targets"]["version"])


def no_traceback(agent: AgentProcess) -> None:
    assert agent.count("Traceback") == 0, agent.lines
    assert agent.count("internal error") == 0, agent.lines


# ---- 1. a systemd that does not read NOTIFY_SOCKET -----------------------------------------


@contextlib.contextmanager
def unread_notify_socket() -> Iterator[tuple[str, int]]:
    """A bound AF_UNIX datagram socket nobody reads, its queue already full.

    The queue limit (net.unix.max_dgram_qlen) belongs to the receiver, so once this filler
    gets EAGAIN every other sender, the agent included, would block in sendto()."""
    directory = Path(tempfile.mkdtemp(prefix="notify-"))  # short: sun_path holds 108 bytes
    address = str(directory / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
        filler.setblocking(False)
        queued = 0
        with contextlib.suppress(BlockingIOError):
            while queued < 100_000:
                filler.sendto(b"STATUS=filler", address)
                queued += 1
        assert 0 < queued < 100_000, "the queue never filled"
        yield address, queued
    finally:
        filler.close()
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_agent_keeps_refreshing_and_stops_when_notify_socket_is_full(
    synced: Client, demo: DemoRepository, agents: list[AgentProcess]
) -> None:
    metrics = synced.home / "textfile" / "stella_trust.prom"
    synced.set_config(**FAST, metrics_path=str(metrics))
    store = Store(synced.cache)
    before = store.read_state().last_attempt
    with unread_notify_socket() as (address, _):
        env = {**synced.env, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
        agent = AgentProcess(synced, env=env)
        agents.append(agent)
        agent.wait_line("agent started")
        wait_for(lambda: store.read_state().last_attempt != before, what="the first cycle")
        agent.wait_line("sd_notify message dropped")  # READY=1 or a watchdog ping met the full queue
        demo.switch_to_rekor_v2()  # only a later cycle can pick this up
        wait_for(lambda: targets_version(synced) == 3, what="a refresh after the drops")
        wait_for(
            lambda: (metric(metrics, "stella_trust_notify_dropped_total") or 0) >= 2,
            what="the drop counter",
        )
        assert agent.stop() < 2
        assert agent.proc.returncode == 0
        assert agent.count("sd_notify message dropped: Resource temporarily unavailable") == 1
        no_traceback(agent)


# ---- 2. a cache the agent cannot write -----------------------------------------------------


@dataclass
class MovedCache(Client):
    """A host whose cache lives somewhere other than <home>/cache."""

    cache_at: Path = Path("/nonexistent")

    @property
    def cache(self) -> Path:
        return self.cache_at


def test_cache_under_a_regular_file_is_a_backed_off_refresh_failure(
    synced: Client, agents: list[AgentProcess]
) -> None:
    blocker = synced.home / "not-a-directory"
    blocker.write_text("a regular file where a directory should be\n")
    host = MovedCache(home=synced.home, url=synced.url, root=synced.root, cache_at=blocker / "cache")
    metrics = synced.home / "textfile" / "stella_trust.prom"
    host.set_config(**FAST, metrics_path=str(metrics))
    agent = AgentProcess(host)
    agents.append(agent)
    agent.wait_line("refresh failed: cache I/O error: Not a directory")
    wait_for(
        lambda: (metric(metrics, "stella_trust_consecutive_failures") or 0) >= 3,
        what="retries with backoff",
    )
    assert agent.count("refresh failed") == 1  # once per distinct error
    failed = next(line for line in agent.lines if "refresh failed" in line)
    assert f"(hint: {HINT} {host.cache}" in failed and " ERROR " in failed
    no_traceback(agent)
    assert agent.stop() < 2
    assert agent.proc.returncode == 0


def mount(*args: str) -> None:
    """`mount ARGS`, or skip: unprivileged runs and some containers may not mount."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root")
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.strip()}")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def test_read_only_cache_keeps_serving_then_recovers(
    synced: Client, demo: DemoRepository, agents: list[AgentProcess]
) -> None:
    metrics = synced.home / "textfile" / "stella_trust.prom"
    synced.set_config(**FAST, metrics_path=str(metrics))
    cache = synced.cache
    mount("--bind", str(cache), str(cache))
    try:
        mount("-o", "remount,ro,bind", str(cache))
        demo.switch_to_rekor_v2()
        agent = AgentProcess(synced)
        agents.append(agent)
        agent.wait_line("refresh failed: cache I/O error: Read-only file system")
        wait_for(
            lambda: (metric(metrics, "stella_trust_consecutive_failures") or 0) >= 3,
            what="retries with backoff",
        )
        assert agent.count("refresh failed") == 1
        assert agent.count("not usable") == 0  # the verified trust on disk is still served
        assert targets_version(synced) == 2
        assert ok(synced.status()).json()["freshness"]["state"] == "fresh"
        mount("-o", "remount,rw,bind", str(cache))
        agent.wait_line("refresh recovered after")
        wait_for(lambda: targets_version(synced) == 3, what="the refresh after recovery")
        no_traceback(agent)
        assert agent.stop() < 2
    finally:
        umount(cache)


def test_full_disk_is_logged_once_and_recovers(
    tmp_path: Path, client: Client, demo: DemoRepository, agents: list[AgentProcess]
) -> None:
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(client.home))
    try:
        ok(client.init())
        metrics = tmp_path / "textfile" / "stella_trust.prom"  # off the full disk: it counts retries
        client.set_config(**FAST, metrics_path=str(metrics))
        filler = client.home / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        demo.switch_to_rekor_v2()
        agent = AgentProcess(client)
        agents.append(agent)
        agent.wait_line("refresh failed:")
        wait_for(  # several backed-off retries (0.2, 0.4, 0.6 s)
            lambda: (metric(metrics, "stella_trust_consecutive_failures") or 0) >= 3,
            what="retries with backoff",
        )
        assert agent.count("No space left on device") >= 1
        assert agent.count("refresh failed") == 1
        assert agent.count("could not record the failure") <= 1  # the core's warning, once
        assert targets_version(client) == 2
        filler.unlink()
        agent.wait_line("refresh recovered after")
        wait_for(lambda: targets_version(client) == 3, what="the refresh after space came back")
        no_traceback(agent)
        assert agent.stop() < 2
    finally:
        umount(client.home)


# ---- 3. stopping mid-download; the status line after a failure ------------------------------


def test_sigterm_mid_download_is_one_info_line(
    synced: Client, demo: DemoRepository, server: FaultyServer, agents: list[AgentProcess]
) -> None:
    demo.switch_to_rekor_v2()
    server.take_requests()  # init fetched the same file; wait for the agent's own request
    server.inject("sigstore-services-v1.json", "slow", 0.05)
    agent = AgentProcess(synced)
    agents.append(agent)
    agent.wait_line("agent started")
    # the server dribbles a byte per 50 ms: from its request on, the agent is mid-download
    wait_for(
        lambda: any(p.endswith("sigstore-services-v1.json") for p in server.requests),
        what="the download to start",
    )
    assert agent.stop() < 2
    assert agent.proc.returncode == 0
    assert agent.count(ABANDONED) == 1
    assert next(line for line in agent.lines if ABANDONED in line).split()[2] == "INFO"
    assert [line for line in agent.lines if " ERROR " in line or " WARNING " in line] == []
    assert agent.count("agent stopping") == 1
    assert targets_version(synced) == 2  # the old trust, intact


def test_failed_cycle_reports_the_last_successful_sync(synced: Client, server: FaultyServer) -> None:
    last_sync = Store(synced.cache).read_state().last_sync
    assert last_sync is not None
    server.inject("/metadata/timestamp.json", "status", 500)
    failed = synced.run("agent", "--once", "--log-format", "text")
    assert failed.code == 1 and "refresh failed: Repository unreachable" in failed.err
    done = next(line for line in failed.err.splitlines() if "one-shot refresh done" in line)
    assert f"last sync {last_sync};" in done and "never" not in done
    assert "1 consecutive failures" in done


def test_stop_signal_is_still_answered_after_notify_drops(synced: Client, agents: list[AgentProcess]) -> None:
    """SIGTERM mid-sleep with a full notify queue: STOPPING=1 is dropped, the exit is not."""
    synced.set_config(refresh_interval_minutes=60)
    with unread_notify_socket() as (address, _):
        store = Store(synced.cache)
        before = store.read_state().last_attempt
        agent = AgentProcess(synced, env={**synced.env, "NOTIFY_SOCKET": address}, debug=True)
        agents.append(agent)
        agent.wait_line("agent started")
        wait_for(lambda: store.read_state().last_attempt != before, what="the first cycle")
        agent.wait_line("next refresh in")  # past READY=1 (dropped), into the hour-long sleep
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        agent.proc.wait(timeout=10)
        assert time.monotonic() - started < 2
        assert agent.proc.returncode == 0
        assert agent.count("sd_notify message dropped:") == 1  # the warning, once
        agent._reader.join(timeout=10)  # stderr read to its end
        assert agent.count("sd_notify message dropped (2 so far)") == 1  # STOPPING=1, at debug
