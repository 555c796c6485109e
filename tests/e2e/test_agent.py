"""The agent as a real process against a real repository on 127.0.0.1, with short intervals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RepositoryServer
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client

FAST = {"refresh_interval_minutes": 0.01, "retry_initial_seconds": 0.2, "jitter_fraction": 0.1}


def wait_first_cycle(client: Client, agent: AgentProcess) -> None:
    """The agent has installed its signal handlers and finished a cycle."""
    agent.wait_line("agent started")
    store = Store(client.cache)
    before = store.read_state().last_attempt
    wait_for(lambda: store.read_state().last_attempt != before, what="a cycle")


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll `condition` until it holds. The timeout only bounds a failing run (a loaded
    2-core machine can take seconds per agent cycle); a passing run waits no longer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)  # polling interval of the condition, not a guess at timing
    raise AssertionError(f"timed out waiting for {what}")


class AgentProcess:
    """`trust agent` in the background; its stderr collected line by line."""

    def __init__(
        self, client: Client, *args: str, env: dict[str, str] | None = None, debug: bool = False
    ) -> None:
        """`debug`: STELLA_DEBUG=1, so the agent also logs its debug lines, among them
        `next refresh in N s` just before each sleep (what tests wait on, never a sleep)."""
        self.lines: list[str] = []
        environment = env or client.env
        if debug:
            environment = {**environment, "STELLA_DEBUG": "1"}
        self.proc = subprocess.Popen(
            client.argv("agent", "--log-format", "text", *args),
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, phrase: str) -> int:
        return sum(phrase in line for line in list(self.lines))

    def wait_line(self, phrase: str, timeout: float = 60) -> None:
        wait_for(lambda: self.count(phrase) > 0, timeout, f"log line {phrase!r} in {self.lines}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> float:
        """SIGTERM; return how long the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=2)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


def start(client: Client, agents: list[AgentProcess], **config: Any) -> AgentProcess:
    """Configure, start and register an agent; return once it has started."""
    if config:
        client.set_config(**config)
    agent = AgentProcess(client)
    agents.append(agent)
    agent.wait_line("agent started")
    return agent


def test_agent_refreshes_when_the_repository_publishes(
    synced: Client, demo: DemoRepository, agents: list[AgentProcess]
) -> None:
    agent = start(synced, agents, **FAST)
    demo.switch_to_rekor_v2()
    wait_for(
        lambda: ok(synced.status()).json()["metadata"]["targets"]["version"] == 3,
        what="the agent to pick up targets v3",
    )
    agent.wait_line("trust updated: root v1 timestamp v3 snapshot v3 targets v3")
    status = ok(synced.status()).json()
    assert status["endpoints"]["rekor"]["public_key_target"] == "rekor-key-v2.pub"
    assert agent.stop() < 2


def test_backoff_when_the_server_is_down_and_recovery(
    synced: Client, demo: DemoRepository, server: FaultyServer, agents: list[AgentProcess]
) -> None:
    synced.set_config(**FAST)
    port = server.server_address[1]
    server.stop()
    agent = AgentProcess(synced)
    agents.append(agent)
    agent.wait_line("refresh failed: Repository unreachable")
    # backoff 0.2, 0.4, 0.6 (capped at the 0.6 s interval): wait for several retries
    store = Store(synced.cache)
    wait_for(lambda: store.read_state().consecutive_failures >= 3, what="three failed attempts")
    assert agent.count("refresh failed:") == 1  # logged once per distinct error
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"  # cached trust served
    revived = RepositoryServer(demo.repo.path, port=port).start()
    try:
        agent.wait_line("refresh recovered after")
        wait_for(lambda: ok(synced.status()).json()["last_error"] is None, what="recovery")
    finally:
        assert agent.stop() < 2
        revived.stop()


def test_sigterm_mid_sleep_exits_fast(synced: Client, agents: list[AgentProcess]) -> None:
    synced.set_config(refresh_interval_minutes=60)
    agent = AgentProcess(synced, debug=True)
    agents.append(agent)
    wait_first_cycle(synced, agent)
    agent.wait_line("next refresh in")  # logged as the hour-long sleep begins
    assert agent.stop() < 2
    assert agent.proc.returncode == 0
    assert agent.count("agent stopping") == 1
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"


def test_sigterm_mid_download_exits_fast_with_a_verifiable_cache(
    synced: Client, demo: DemoRepository, server: FaultyServer, agents: list[AgentProcess]
) -> None:
    before = ok(synced.status()).json()["metadata"]
    demo.switch_to_rekor_v2()
    server.inject("sigstore-services-v1.json", "slow", 0.05)
    agent = AgentProcess(synced)
    agents.append(agent)
    # the server dribbles a byte per 50 ms: from its request on, the agent is mid-download
    wait_for(
        lambda: any(p.endswith("sigstore-services-v1.json") for p in server.requests),
        what="the download to start",
    )
    assert agent.stop() < 2
    status = ok(synced.status()).json()
    assert status["metadata"] == before  # the half-done refresh left the old trust intact
    server.heal()
    ok(synced.run("sync"))
    assert ok(synced.status()).json()["metadata"]["targets"]["version"] == 3


def test_sighup_with_a_bad_config_keeps_the_old_one(
    synced: Client, demo: DemoRepository, agents: list[AgentProcess]
) -> None:
    agent = start(synced, agents, **FAST)
    good = synced.config.read_text()
    synced.config.write_text(good + "    refresh_interval_minutes: [broken\n")
    agent.signal(signal.SIGHUP)
    agent.wait_line("configuration reload failed, keeping the previous one")
    assert agent.proc.poll() is None
    demo.switch_to_rekor_v2()
    agent.wait_line("trust updated: root v1 timestamp v3")  # still refreshing, on the old config
    synced.config.write_text(good)
    assert ok(synced.status()).json()["metadata"]["targets"]["version"] == 3
    agent.signal(signal.SIGHUP)
    agent.wait_line("configuration reloaded")
    assert agent.stop() < 2


def test_sigusr1_refreshes_now(
    synced: Client, demo: DemoRepository, server: FaultyServer, agents: list[AgentProcess]
) -> None:
    synced.set_config(refresh_interval_minutes=60)
    agent = AgentProcess(synced)
    agents.append(agent)
    wait_first_cycle(synced, agent)
    demo.switch_to_rekor_v2()
    agent.signal(signal.SIGUSR1)
    agent.wait_line("refresh requested (SIGUSR1)")
    wait_for(
        lambda: ok(synced.status()).json()["metadata"]["targets"]["version"] == 3,
        what="the refresh SIGUSR1 asked for",
    )
    assert agent.stop() < 2


def test_cli_sync_beside_the_agent_never_corrupts(
    synced: Client, demo: DemoRepository, agents: list[AgentProcess]
) -> None:
    agent = start(synced, agents, **FAST)
    for round_ in range(8):
        if round_ % 2 == 0:
            demo.repo.resign_timestamp()
        ok(synced.run("sync"))
        assert ok(synced.status()).json()["freshness"]["state"] == "fresh"
    assert agent.proc.poll() is None
    assert agent.stop() < 2
    assert ok(synced.status()).json()["metadata"]["timestamp"]["version"] >= 6


def test_sd_notify_messages_on_a_real_socket(synced: Client, agents: list[AgentProcess]) -> None:
    synced.set_config(**FAST)
    directory = Path(tempfile.mkdtemp(prefix="notify-"))
    address = str(directory / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.2)
    messages: list[str] = []
    try:
        env = {**synced.env, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
        agent = AgentProcess(synced, env=env)
        agents.append(agent)

        def drain() -> None:
            try:
                while True:
                    messages.append(sock.recv(4096).decode())
            except TimeoutError:
                pass

        wait_for(lambda: (drain(), any("WATCHDOG=1" in m for m in messages))[1], what="watchdog")
        wait_for(lambda: (drain(), any("READY=1" in m for m in messages))[1], what="READY")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=trust fresh; last sync 20" in ready
        assert f"MAINPID={agent.proc.pid}" in ready
        wait_for(lambda: (drain(), sum("STATUS=" in m for m in messages) >= 2)[1], what="STATUS")
        assert agent.stop() < 2
        drain()
        assert any(m == "STOPPING=1" for m in messages)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_metrics_file_parses_with_prometheus_client(
    synced: Client, server: FaultyServer, agents: list[AgentProcess]
) -> None:
    metrics = synced.home / "textfile" / "stella_trust.prom"
    synced.set_config(**FAST, metrics_path=str(metrics))
    agent = AgentProcess(synced)
    agents.append(agent)
    wait_for(metrics.exists, what="the metrics file")
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    values: dict[str, Any] = {
        (s.name + str(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert values["stella_trust_consecutive_failures[]"] == 0
    assert values["stella_trust_freshness_state[('state', 'fresh')]"] == 1
    assert values["stella_trust_freshness_state[('state', 'stale')]"] == 0
    assert values["stella_trust_role_version[('role', 'timestamp')]"] == 2
    assert values["stella_trust_seconds_until_stale[]"] > 7 * 86400
    assert abs(values["stella_trust_last_success_timestamp_seconds[]"] - time.time()) < 60
    assert values["stella_trust_sync_duration_seconds[]"] >= 0
    server.inject("/metadata/timestamp.json", "status", 500)
    wait_for(
        lambda: "stella_trust_consecutive_failures 0.0" not in metrics.read_text(),
        what="failures in the metrics",
    )
    assert agent.stop() < 2


def test_agent_once_exit_codes(synced: Client, server: FaultyServer) -> None:
    assert synced.run("agent", "--once").code == 0
    server.inject("/metadata/timestamp.json", "status", 500)
    failed = synced.run("agent", "--once")
    assert failed.code == 1 and "Repository unreachable" in failed.err


def test_offline_agent_uses_no_network(
    synced: Client, server: FaultyServer, agents: list[AgentProcess]
) -> None:
    synced.set_config(**FAST, offline_mode=True)
    server.take_requests()
    agent = AgentProcess(synced, debug=True)
    agents.append(agent)
    agent.wait_line("agent started")
    wait_for(lambda: agent.count("next refresh in") >= 3, what="three offline cycles")
    assert server.take_requests() == []
    assert agent.count("refresh failed") == 0
    assert agent.stop() < 2


def test_journal_format_under_systemd(synced: Client) -> None:
    env = {**synced.env, "INVOCATION_ID": "0123456789abcdef"}
    done = subprocess.run(
        synced.argv("agent", "--once"), env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0
    assert any(line.startswith("<6>") for line in done.stderr.splitlines())
    assert not any(line[:4].isdigit() for line in done.stderr.splitlines())  # no timestamps


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "CI installs systemd for systemd-analyze"
    trust = shutil.which("trust") or str(Path(sys.executable).with_name("trust"))
    units = Path(__file__).resolve().parents[2] / "systemd"
    for unit in list(units.glob("*.service")) + list(units.glob("*.timer")):
        (tmp_path / unit.name).write_text(unit.read_text().replace("/usr/local/bin/trust", trust))
    files = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run(
        [analyze, "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    agent_unit = (units / "stella-trust-agent.service").read_text()
    for setting in (
        "Type=notify",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "MemoryMax=",
        "StateDirectory=stella-trust",
        "ConfigurationDirectory=",
    ):
        assert setting in agent_unit, setting
    timer = (units / "stella-trust-sync.timer").read_text()
    assert "OnCalendar=hourly" in timer and "Persistent=true" in timer
    assert "RandomizedDelaySec=" in timer
    assert "agent --once" in (units / "stella-trust-sync.service").read_text()
