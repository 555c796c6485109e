"""A repository and its hosts through months of simulated time, in process (issue 20).

One clock drives everything: the repository signs with it, our code is handed it (`now`),
and python-tuf's Updater reads it through `python_tuf_clock` (python-tuf takes its reference
time from `datetime.now()` when an Updater is built; there is no public way to give it one, so
the test replaces the module's `datetime` for the duration). Three hosts follow the
repository: a CLI host (`sync`), an agent (`Agent.guarded_cycle`, the real loop's cycle) and
an air-gapped host fed bundles, some of them out of order. After every event the invariants
of docs/design.md decision 16 are checked (`World.check`).

Used by tests/unit/test_lifecycle_soak.py (bounded, in CI) and benchmarks/bench_lifecycle.py
(the long form: months of events and 10,000 agent cycles with resource figures).
"""

from __future__ import annotations

import contextlib
import datetime as _datetime
import json
import logging
import os
import resource
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from securesystemslib.signer import Signature, SSlibKey
from tuf.ngclient._internal import trusted_metadata_set

from stella_trust._agent.loop import Agent
from stella_trust._agent.notify import Notifier
from stella_trust._internal.bundle.export import export_archive
from stella_trust._internal.bundle.importer import import_bundle
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import CACHE_DIR_MODE, CACHE_FILE_MODE, Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import StellaError
from stella_trust.repository import Repository
from stella_trust.repository.metadata import Expiries
from tests.unit.simulator import BASE_URL, RepositoryFetcher

EXTRA = "extra.pem"  # a pinned target that is retired and listed again
EXTRA_BYTES = b"-----BEGIN PUBLIC KEY-----\nextra\n-----END PUBLIC KEY-----\n"


@dataclass
class SimClock:
    now: datetime

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def __call__(self) -> datetime:
        return self.now


@contextlib.contextmanager
def python_tuf_clock(clock: SimClock) -> Iterator[None]:
    """python-tuf's trusted set reads `datetime.datetime.now(timezone.utc)`: give it ours."""

    class _Now(_datetime.datetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _Now:  # type: ignore[override]
            moment = clock.now if tz is None else clock.now.astimezone(tz)
            return cls.fromtimestamp(moment.timestamp(), moment.tzinfo)

    real = trusted_metadata_set.datetime
    trusted_metadata_set.datetime = SimpleNamespace(  # type: ignore[assignment]
        datetime=_Now, timezone=_datetime.timezone, timedelta=_datetime.timedelta
    )
    try:
        yield
    finally:
        trusted_metadata_set.datetime = real  # type: ignore[assignment]


@dataclass
class Host:
    name: str
    settings: TrustRepoSettings
    store: Store
    versions: dict[str, int] = field(default_factory=dict)  # highest seen: never go back
    failures: list[str] = field(default_factory=list)


class World:
    """The repository, its timer, and the hosts that follow it."""

    def __init__(self, home: Path, clock: SimClock, expiries: Expiries | None = None) -> None:
        self.home = home
        self.clock = clock
        self.demo = DemoRepository(home / "repository", now=clock.now, expiries=expiries)
        self.repo: Repository = self.demo.repo
        self.repo.add_target(EXTRA, EXTRA_BYTES)
        self.repo.publish(clock.now)
        self.timer_running = True
        self.pending_bundles: list[Path] = []
        pins = ["rekor-key-v2", EXTRA]
        self.cli = self._host("cli", {"tuf_url": BASE_URL, "pinned_targets": pins})
        agent_host = self._host("agent", {"tuf_url": BASE_URL, "pinned_targets": pins})
        self.air = self._host("air", {"pinned_targets": pins, "offline_mode": True})
        self.agent_host = agent_host
        self.agent = Agent(
            lambda: agent_host.settings,
            notifier=Notifier({}),
            logger=logging.getLogger("lifecycle-agent"),
            clock=clock,
            fetcher=lambda: RepositoryFetcher(self.repo),
        )
        self.hosts = [self.cli, agent_host, self.air]
        self.events: list[str] = []

    def _host(self, name: str, values: dict[str, Any]) -> Host:
        settings = load_settings(
            self.home / "absent.yaml", {"local_cache_path": self.home / name / "cache", **values}
        )
        store = Store.of(settings)
        store.write_anchor(self.repo.root_bytes(1))
        return Host(name, settings, store)

    # ---- the repository's side ------------------------------------------------------------
    def day(self) -> None:
        """One day: the timer renews the timestamp (and the snapshot before it expires),
        then every connected host refreshes."""
        self.clock.advance(timedelta(days=1))
        if self.timer_running:
            snapshot_left = self.repo.snapshot.signed.expires - self.clock.now
            if snapshot_left < timedelta(days=2):
                self.repo.sign_snapshot_and_timestamp(self.clock.now)
                self.repo.write()
            else:
                self.repo.resign_timestamp(self.clock.now)
        targets_left = self.repo.targets.signed.expires - self.clock.now
        if targets_left < timedelta(days=10):
            self.repo.publish(self.clock.now)
        self.refresh()

    def release(self, name: str) -> None:
        self.repo.add_target(name, name.encode())
        self.repo.publish(self.clock.now)
        self.events.append(f"release {name}")

    def retire(self, name: str) -> None:
        self.repo.remove_target(name)
        self.repo.publish(self.clock.now)
        self.events.append(f"retire {name}")

    def relist(self, name: str, data: bytes) -> None:
        self.repo.add_target(name, data)
        self.repo.publish(self.clock.now)
        self.events.append(f"relist {name}")

    def rotate(self, role: str) -> None:
        self.demo.rotate(role, self.clock.now)
        self.events.append(f"rotate {role}")

    def refused_root(self) -> None:
        """A validly signed root v+1 listing the timestamp key twice (threshold 2)."""
        key = self.repo.signers["timestamp"][0].public_key
        twin = SSlibKey("ab" * 32, key.keytype, key.scheme, dict(key.keyval))
        self.repo.root.signed.add_key(twin, "timestamp")
        self.repo.root.signed.roles["timestamp"].threshold = 2
        self._sign_new_root()
        self.repo.sign_snapshot_and_timestamp(self.clock.now)
        first = self.repo.timestamp.signatures[key.keyid]
        self.repo.timestamp.signatures[twin.keyid] = Signature(twin.keyid, first.signature)
        self.repo.write()
        self.events.append("refused root")

    def fixed_root(self) -> None:
        self.repo.root.signed.revoke_key("ab" * 32, "timestamp")
        self.repo.root.signed.roles["timestamp"].threshold = 1
        self._sign_new_root()
        self.repo.sign_snapshot_and_timestamp(self.clock.now)
        self.repo.write()
        self.events.append("fixed root")

    def _sign_new_root(self) -> None:
        self.repo.root.signed.version += 1
        self.repo.root.signed.expires = self.clock.now + self.repo.expiries.root
        self.repo.root.signatures.clear()
        for signer in self.repo.signers["root"]:
            self.repo.root.sign(signer, append=True)
        self.repo.record_root()

    def move_log_url(self, url: str) -> None:
        """The service map names the same Rekor key at another URL."""
        name = "sigstore-services-v1.json"
        document = json.loads(self.repo.target_data[name])
        document["rekor"]["url"] = url
        self.repo.add_target(name, json.dumps(document).encode())
        self.repo.publish(self.clock.now)
        self.events.append(f"log URL moved to {url}")

    def export_bundle(self, label: str) -> Path:
        bundle = self.home / "bundles" / f"{label}.tar.zst"
        bundle.parent.mkdir(exist_ok=True)
        export_archive(self.cli.settings, self.cli.store, bundle, now=self.clock.now)
        return bundle

    # ---- the hosts' side --------------------------------------------------------------------
    def refresh(self) -> None:
        for host in (self.cli,):
            self._guard(
                host, lambda h=host: sync(h.settings, h.store, now=self.clock.now, fetcher=self._fetcher())
            )
        outcome = self.agent.guarded_cycle()
        if outcome.error is not None:
            self._failed(self.agent_host, outcome.error)

    def import_into_air(self, bundle: Path) -> None:
        self._guard(
            self.air, lambda: import_bundle(self.air.settings, self.air.store, bundle, now=self.clock.now)
        )

    def _fetcher(self) -> RepositoryFetcher:
        return RepositoryFetcher(self.repo)

    def _guard(self, host: Host, action: Callable[[], object]) -> None:
        try:
            action()
        except StellaError as exc:
            self._failed(host, exc)
        # anything else is a bug: it propagates and fails the test ("no traceback")

    def _failed(self, host: Host, error: StellaError) -> None:
        assert "internal error" not in error.message, f"{host.name}: {error.message}"
        host.failures.append(error.message)

    # ---- invariants (decision 16) ------------------------------------------------------------
    def check(self) -> dict[str, str]:
        """After every event: never reverted; serving the last good trust or stale by its
        signed expiry; readers' access. Returns each host's freshness state."""
        states = {}
        for host in self.hosts:
            if host.store.current() is None:
                states[host.name] = "empty"
                continue
            view = load_view(host.settings, host.store, self.clock.now)  # never raises: never edited
            versions = {role: info.version for role, info in view.roles.items()}
            for role, version in versions.items():
                assert version >= host.versions.get(role, 0), f"{host.name}: {role} went back to v{version}"
            host.versions = versions
            if not view.usable:
                assert view.freshness.stale_after <= self.clock.now, f"{host.name}: unusable before stale"
            check_readers_access(host.store)
            states[host.name] = str(view.freshness.state)
        return states

    def current_versions(self) -> dict[str, int]:
        return {
            "root": self.repo.root.signed.version,
            "timestamp": self.repo.timestamp.signed.version,
            "snapshot": self.repo.snapshot.signed.version,
            "targets": self.repo.targets.signed.version,
        }

    def caught_up(self, host: Host) -> bool:
        """Holds exactly what the repository publishes now: recovered, no human action."""
        view = load_view(host.settings, host.store, self.clock.now)
        return {role: info.version for role, info in view.roles.items()} == self.current_versions()


def check_readers_access(store: Store) -> None:
    for directory, dirs, files in os.walk(store.root):
        if "/." in directory or ".spare" in directory:
            continue
        for name in [*dirs, *files]:
            if name.startswith("."):
                continue
            st = os.lstat(Path(directory, name))
            if stat.S_ISLNK(st.st_mode):
                continue
            wanted = CACHE_DIR_MODE if stat.S_ISDIR(st.st_mode) else CACHE_FILE_MODE
            assert stat.S_IMODE(st.st_mode) == wanted, f"{directory}/{name}: {oct(st.st_mode)}"


def months(world: World, *, stop_days: int = 10) -> list[dict[str, str]]:
    """The scripted months: every event of issue 20, the invariants after each day. Returns
    each day's freshness state per host (for the benchmark's figures)."""
    log: list[dict[str, str]] = []
    air_bundles: list[Path] = []

    def days(count: int) -> None:
        for _ in range(count):
            world.day()
            log.append(world.check())

    world.refresh()
    world.import_into_air(world.export_bundle("day0"))
    world.check()
    days(9)
    world.release("release-1.txt")
    days(5)
    air_bundles.append(world.export_bundle("day15"))
    world.retire(EXTRA)
    days(3)
    assert all(world.caught_up(h) for h in (world.cli, world.agent_host)), "retirement not taken"
    air_bundles.append(world.export_bundle("day18"))
    # out of order: the newer bundle first, then the older one (refused: rollback), trust kept
    world.import_into_air(air_bundles[1])
    world.import_into_air(air_bundles[0])
    assert world.air.failures and "Rollback" in world.air.failures[-1], world.air.failures[-1:]
    world.check()
    days(10)
    world.relist(EXTRA, EXTRA_BYTES)
    days(2)
    for host in (world.cli, world.agent_host):
        assert EXTRA in [t.name for t in load_view(host.settings, host.store, world.clock.now).targets]
    world.rotate("timestamp")
    days(3)
    world.rotate("snapshot")
    days(3)
    world.refused_root()
    world.refresh()  # python-tuf accepts this root (it counts keyids); our rule refuses it
    world.check()
    assert "lists the same key twice" in world.cli.failures[-1], world.cli.failures[-1]
    days(3)  # refused every day (python-tuf too, once the timer signs alone); trust served
    assert all(not h.store.committed_roots() for h in world.hosts)
    world.fixed_root()
    days(2)
    assert all(world.caught_up(h) for h in (world.cli, world.agent_host)), "not healed after the fixed root"
    world.import_into_air(world.export_bundle("after-fix"))
    world.timer_running = False  # the timer stops: timestamp expires, grace, then stale
    days(stop_days)
    world.timer_running = True
    days(2)
    assert all(world.caught_up(h) for h in (world.cli, world.agent_host)), (
        "not healed after the timer resumed"
    )
    world.rotate("root")
    days(3)
    world.move_log_url("https://rekor.moved.example")
    days(3)
    world.import_into_air(world.export_bundle("final"))
    world.check()
    assert world.caught_up(world.air) and all(world.caught_up(h) for h in world.hosts)
    return log


def resources(store: Store) -> dict[str, float]:
    """What must stay flat over thousands of cycles."""
    files = 0
    size = 0
    for directory, _dirs, names in os.walk(store.root):
        for name in names:
            files += 1
            with contextlib.suppress(OSError):
                size += os.lstat(Path(directory, name)).st_size
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return {
        "cache_bytes": size,
        "cache_files": files,
        "open_fds": len(os.listdir("/proc/self/fd")),
        "rss_mib": rss_pages * resource.getpagesize() / (1 << 20),
    }


def agent_cycles(world: World, count: int, *, renew_every: int = 24, release_every: int = 500) -> None:
    """`count` agent cycles an hour apart: the timer renews the timestamp every `renew_every`
    cycles (a changing sync, a new generation) and a release lands every `release_every`."""
    for cycle in range(1, count + 1):
        world.clock.advance(timedelta(hours=1))
        if cycle % renew_every == 0:
            if world.repo.snapshot.signed.expires - world.clock.now < timedelta(days=2):
                world.repo.sign_snapshot_and_timestamp(world.clock.now)
                world.repo.write()
            else:
                world.repo.resign_timestamp(world.clock.now)
        if world.repo.root.signed.expires - world.clock.now < timedelta(days=30):  # the yearly root
            world._sign_new_root()
            world.repo.sign_snapshot_and_timestamp(world.clock.now)
            world.repo.write()
        if cycle % release_every == 0:
            world.repo.add_target(f"r{cycle}.txt", b"r")
            world.repo.remove_target(f"r{cycle - release_every}.txt") if cycle > release_every else None
            world.repo.publish(world.clock.now)
        elif world.repo.targets.signed.expires - world.clock.now < timedelta(days=10):
            world.repo.publish(world.clock.now)
        outcome = world.agent.guarded_cycle()
        assert outcome.error is None, outcome.error.message
        assert outcome.view is not None and outcome.view.usable


def start(home: Path, *, root_lifetime: timedelta = timedelta(days=365)) -> tuple[World, SimClock]:
    """A world starting a minute from now (python-tuf never sees metadata signed in its past).
    `root_lifetime`: a long-running agent measured for flat resources is given a root that
    outlives the run, since a root rotation adds a root every host keeps for good."""
    clock = SimClock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1))
    return World(home, clock, Expiries(root=root_lifetime)), clock
