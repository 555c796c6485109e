"""The agent's schedule in process: the interval's jitter stays bounded and spreads a fleet, a
failing host retries once soon (spread) and then keeps its interval, so a fleet never syncs in
lockstep and an origin coming back from an hour's outage meets a normal minute, not a stampede
(issue 23; benchmarks/bench_fleet.py measures the same against a real nginx)."""

from __future__ import annotations

import heapq
import logging
import random
from collections import Counter
from pathlib import Path

from stella_trust._agent.loop import Agent
from stella_trust._agent.notify import Notifier
from stella_trust._agent.schedule import next_delay, next_interval
from stella_trust._internal.settings import TrustRepoSettings
from tests.unit.simulator import Host, RepositoryFetcher, Simulated, synced

HOUR = 3600.0


def settings_with(**values: float) -> TrustRepoSettings:
    return TrustRepoSettings(tuf_url="file:///nowhere", local_cache_path=Path("/nonexistent"), **values)


def test_interval_jitter_stays_within_bounds() -> None:
    rng = random.Random(7)
    samples = [next_interval(3600, 0.1, rng) for _ in range(10_000)]
    assert min(samples) >= 3240 and max(samples) <= 3960
    assert max(samples) - min(samples) > 600  # it really spreads the fleet
    assert next_interval(60, 0.0, rng) == 60


def test_first_retry_comes_around_retry_initial_and_spreads_hosts_that_failed_together() -> None:
    settings = settings_with(retry_initial_seconds=30)
    rng = random.Random(11)
    delays = [next_delay(settings, 1, rng) for _ in range(1000)]  # 1,000 hosts failed in one second
    assert min(delays) >= 15 and max(delays) <= 45
    assert 28 <= sum(delays) / len(delays) <= 32  # "after about retry_initial_seconds"
    per_second = Counter(int(d) for d in delays)
    assert len(per_second) >= 29 and max(per_second.values()) <= 60  # no second takes more than 6 %


def test_first_retry_is_never_later_than_the_interval() -> None:
    settings = settings_with(refresh_interval_minutes=1, retry_initial_seconds=600, jitter_fraction=0.1)
    rng = random.Random(3)
    assert max(next_delay(settings, 1, rng) for _ in range(1000)) <= 66


def test_later_failures_keep_the_interval_with_its_jitter() -> None:
    settings = settings_with(refresh_interval_minutes=60, retry_initial_seconds=30, jitter_fraction=0.1)
    rng = random.Random(5)
    for failures in (2, 3, 7, 50):
        delays = [next_delay(settings, failures, rng) for _ in range(2000)]
        assert min(delays) >= 3240 and max(delays) <= 3960
        assert max(delays) - min(delays) > 600  # spread like successful hosts: no re-synchronising


def fleet(
    hosts: int, outage: tuple[float, float], end: float, seed: int
) -> tuple[list[float], dict[int, float]]:
    """Every attempt of `hosts` agents following `next_delay` (default settings) from a steady
    state, the origin failing during `outage`; and, per host that failed, how long after the
    outage its first success came."""
    settings = settings_with()
    rng = random.Random(seed)
    queue = [(rng.uniform(0, HOUR), n) for n in range(hosts)]
    heapq.heapify(queue)
    failures = [0] * hosts
    attempts: list[float] = []
    back: dict[int, float] = {}
    while queue:
        t, n = heapq.heappop(queue)
        if t >= end:
            continue
        attempts.append(t)
        if outage[0] <= t < outage[1]:
            failures[n] += 1
        else:
            if failures[n] and n not in back:
                back[n] = t - outage[1]
            failures[n] = 0
        heapq.heappush(queue, (t + next_delay(settings, failures[n], rng), n))
    return attempts, back


def test_a_returning_origin_meets_no_more_than_twice_a_normal_minute() -> None:
    outage = (HOUR, 2 * HOUR)
    attempts, back = fleet(1000, outage, 3 * HOUR, seed=23)
    normal_minute = sum(1 for t in attempts if t < HOUR) / 60
    first_minute = sum(1 for t in attempts if outage[1] <= t < outage[1] + 60)
    after = sorted(t for t in attempts if t >= outage[1])
    peak_window = max(
        sum(1 for u in after[i : i + 200] if u < t + 60) for i, t in enumerate(after)
    )  # the most attempts in any 60 s of the hour after (< 200 of them in any minute)
    assert first_minute <= 2 * normal_minute
    assert peak_window <= 2 * normal_minute
    # Every host that failed retried a bounded number of times, and is back within an interval.
    during = sum(1 for t in attempts if outage[0] <= t < outage[1])
    assert during <= 2.2 * normal_minute * 60  # each host: its failed sync and one retry
    assert len(back) >= 900 and max(back.values()) <= 3960 + 45


def test_the_doubling_ladder_would_have_stampeded() -> None:
    """The bar above can fail: the former schedule (retry_initial doubling, capped at the
    interval) gives the same fleet several times a normal minute when the origin returns."""
    rng = random.Random(23)
    queue = [(rng.uniform(0, HOUR), n) for n in range(1000)]
    heapq.heapify(queue)
    failures = [0] * 1000
    attempts: list[float] = []
    while queue:
        t, n = heapq.heappop(queue)
        if t >= 2 * HOUR + 60:
            continue
        attempts.append(t)
        failures[n] = failures[n] + 1 if HOUR <= t < 2 * HOUR else 0
        ladder = min(30 * 2.0 ** (failures[n] - 1), HOUR)
        heapq.heappush(queue, (t + (ladder if failures[n] else next_interval(HOUR, 0.1, rng)), n))
    normal_minute = sum(1 for t in attempts if t < HOUR) / 60
    first_minute = sum(1 for t in attempts if 2 * HOUR <= t < 2 * HOUR + 60)
    assert first_minute > 3 * normal_minute


def test_the_agent_retries_once_soon_then_keeps_its_interval(host: Host, simulated: Simulated) -> None:
    """The loop's own delay (`Agent.delay_after`) after real cycles against a failing origin."""
    settings, _ = host
    demo, _ = simulated
    synced(host, demo)
    fetcher = RepositoryFetcher(demo.repo)
    agent = Agent(
        lambda: settings,
        notifier=Notifier({}),
        logger=logging.getLogger("test-agent-schedule"),
        rng=random.Random(1),
        fetcher=lambda: fetcher,
    )
    fetcher.overrides["metadata/2.root.json"] = 502  # the origin is down
    first = agent.guarded_cycle()
    assert not first.ok and agent.failures == 1
    assert 15 <= agent.delay_after(first) <= 45
    second = agent.guarded_cycle()
    assert not second.ok and agent.failures == 2
    assert 3240 <= agent.delay_after(second) <= 3960
    assert second.view is not None and second.view.usable  # the cached trust is still served
    del fetcher.overrides["metadata/2.root.json"]  # it is back
    recovered = agent.guarded_cycle()
    assert recovered.ok and agent.failures == 0
    assert 3240 <= agent.delay_after(recovered) <= 3960
    fetcher.overrides["metadata/2.root.json"] = 502  # a new streak starts with a quick retry again
    again = agent.guarded_cycle()
    assert not again.ok and agent.failures == 1 and 15 <= agent.delay_after(again) <= 45
