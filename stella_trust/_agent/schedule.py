"""When the agent's next cycle runs: the interval with jitter, and the retry after a failure.

The loop (loop.py) and the fleet benchmark (benchmarks/bench_fleet.py) both take the delay
from `next_delay`, so what the benchmark measures at the origin is what agents do.
"""

from __future__ import annotations

import random

from stella_trust._internal.settings import TrustRepoSettings


def next_interval(interval: float, jitter_fraction: float, rng: random.Random) -> float:
    """The interval, spread by +/- jitter_fraction so hosts drift apart."""
    return interval * (1.0 + rng.uniform(-jitter_fraction, jitter_fraction))


def backoff(failures: int, initial: float, cap: float) -> float:
    """initial, 2x, 4x ... after consecutive failures, never longer than the interval."""
    return float(min(initial * 2.0 ** max(failures - 1, 0), cap))


def next_delay(settings: TrustRepoSettings, failures: int, rng: random.Random) -> float:
    """Seconds until the next cycle, after a cycle that left `failures` consecutive failures
    (0: it succeeded)."""
    interval = settings.refresh_interval_minutes * 60
    if failures == 0:
        return next_interval(interval, settings.jitter_fraction, rng)
    return backoff(failures, settings.retry_initial_seconds, interval)
