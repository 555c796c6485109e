"""When the agent's next cycle runs: the interval with jitter, and the retry after a failure.

The loop (loop.py) and the fleet benchmark (benchmarks/bench_fleet.py) both take the delay
from `next_delay`, so what the benchmark measures at the origin is what agents do.

Why a failing host retries once, soon, and then keeps its interval (docs/design.md, "The
agent's schedule at fleet scale"): when an origin comes back, the requests it meets in the
next minute are the hosts' normal cadence plus every retry the fleet still has pending, which
is the number of retries a host makes within the outage's length. The former ladder
(retry_initial_seconds doubling, capped at the interval) makes six retries in the first hour
of a failure, and 1,000 hosts met a returning origin with 4.9x the requests of an average
minute (bench_fleet.py; the fleet goal is at most 2x; this schedule: 1.6x). Jitter (full,
equal or decorrelated) only moves those retries in time: it does not lower their count, and a
simulation of the same fleet with full-jitter doubling still gave 5-6x. So the count is
bounded instead: one spread retry after about retry_initial_seconds rides out a blip, and from
the second consecutive failure the host waits its interval, with the interval's jitter, as if
the cycle had succeeded. The retries of a long outage then land where the host's normal syncs
would have, and the returning origin sees a normal hour. The price is recovery: after a long
outage a host is back within one interval (not the ladder's 32 minutes), while the trust it
serves meanwhile stays verified and fresh (the freshness threshold is days, the interval an
hour).
"""

from __future__ import annotations

import random

from stella_trust._internal.settings import TrustRepoSettings

# The first retry comes after retry_initial_seconds times a factor drawn from this range:
# hosts that failed in the same second (a shared network blip) do not retry in the same second.
FIRST_RETRY_SPREAD = (0.5, 1.5)


def next_interval(interval: float, jitter_fraction: float, rng: random.Random) -> float:
    """The interval, spread by +/- jitter_fraction so hosts drift apart."""
    return interval * (1.0 + rng.uniform(-jitter_fraction, jitter_fraction))


def retry_delay(
    failures: int, initial: float, interval: float, jitter_fraction: float, rng: random.Random
) -> float:
    """After the first failure of a streak: initial x U(0.5, 1.5), never later than the next
    interval would be; after the second and later: the interval with its jitter (module
    docstring: a bounded number of retries is what keeps a returning origin from a stampede)."""
    cadence = next_interval(interval, jitter_fraction, rng)
    if failures <= 1:
        return min(initial * rng.uniform(*FIRST_RETRY_SPREAD), cadence)
    return cadence


def next_delay(settings: TrustRepoSettings, failures: int, rng: random.Random) -> float:
    """Seconds until the next cycle, after a cycle that left `failures` consecutive failures
    (0: it succeeded)."""
    interval = settings.refresh_interval_minutes * 60
    if failures == 0:
        return next_interval(interval, settings.jitter_fraction, rng)
    return retry_delay(failures, settings.retry_initial_seconds, interval, settings.jitter_fraction, rng)
