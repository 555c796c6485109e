"""The agent's schedule in process: retries back off and the interval's jitter stays bounded,
so a fleet never syncs in lockstep nor hammers a failing repository."""

from __future__ import annotations

import random

from stella_trust._agent.schedule import backoff, next_interval


def test_interval_jitter_stays_within_bounds() -> None:
    rng = random.Random(7)
    samples = [next_interval(3600, 0.1, rng) for _ in range(10_000)]
    assert min(samples) >= 3240 and max(samples) <= 3960
    assert max(samples) - min(samples) > 600  # it really spreads the fleet
    assert next_interval(60, 0.0, rng) == 60


def test_backoff_doubles_from_initial_and_caps_at_interval() -> None:
    assert [backoff(n, 30, 3600) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert backoff(50, 30, 600) == 600
