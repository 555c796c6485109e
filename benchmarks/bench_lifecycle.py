"""The lifecycle soak, long form (issue 20). Prints figures; the invariants assert.

    .venv/bin/python benchmarks/bench_lifecycle.py [--cycles 10000] [--sample 1000]

1. The scripted months of tests/lifecycle.py (releases, a retirement and a re-listing, key
   and root rotations, a refused root then a fixed one, a timer stopped for N days then
   resumed, a log URL move, bundles imported out of order on an air-gapped host), run with
   the timer stopped for 10 days, then for 20: every host serves its last good trust or is
   stale by signed expiry, never reverts, and heals with no human action.
2. `--cycles` agent cycles an hour apart in process (the real `Agent.guarded_cycle`, an
   injected clock, python-tuf given the same clock): the timer renews the timestamp daily and a
   release lands every 500 cycles (the root outlives the run: a root rotation adds a root
   that every host keeps for good, which is growth by design, not a leak). Cache size, file
   count, open file descriptors and RSS are sampled every `--sample` cycles; the figures
   after the first sample must stay within +/-10 % of it (the first thousand cycles warm
   the process's memos).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lifecycle import agent_cycles, months, python_tuf_clock, resources, start


def run_months(stop_days: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        world, clock = start(Path(home))
        started = time.perf_counter()
        with python_tuf_clock(clock):
            log = months(world, stop_days=stop_days)
        states = log
        per_host = ", ".join(
            f"{h.name} {sum(s.get(h.name) == 'grace' for s in states)}/"
            f"{sum(s.get(h.name) == 'stale' for s in states)}"
            for h in world.hosts
        )
        print(
            f"months (timer stopped {stop_days} d): {len(log)} days, {len(world.events)} events, "
            f"{sum(len(h.failures) for h in world.hosts)} refusals, every host healed; days in "
            f"grace/stale per host: {per_host}; {time.perf_counter() - started:.1f} s"
        )


def run_cycles(cycles: int, sample: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        world, clock = start(Path(home), root_lifetime=timedelta(days=cycles / 24 + 60))
        rows: list[tuple[int, dict[str, float]]] = []
        started = time.perf_counter()
        with python_tuf_clock(clock):
            world.refresh()
            done = 0
            while done < cycles:
                agent_cycles(world, sample)
                done += sample
                rows.append((done, resources(world.agent_host.store)))
        seconds = time.perf_counter() - started
    print(f"\nagent cycles: {cycles} in {seconds:.1f} s ({seconds / cycles * 1000:.2f} ms per cycle)")
    print(f"{'cycle':>7} {'cache bytes':>12} {'files':>6} {'fds':>4} {'RSS MiB':>8}")
    for cycle, figures in rows:
        print(
            f"{cycle:>7} {figures['cache_bytes']:>12.0f} {figures['cache_files']:>6.0f} "
            f"{figures['open_fds']:>4.0f} {figures['rss_mib']:>8.1f}"
        )
    base = rows[0][1]
    worst = {
        name: max(abs(figures[name] - base[name]) / base[name] for _, figures in rows[1:]) * 100
        for name in base
    }
    print("largest change from the first sample: " + ", ".join(f"{k} {v:.1f} %" for k, v in worst.items()))
    flat = all(value <= 10 for value in worst.values())
    print("flat within +/-10 %: " + ("yes" if flat else "NO"))
    if not flat:
        raise SystemExit(1)


def main() -> None:
    quiet = logging.getLogger("lifecycle-agent")  # the agent's log lines are not the figures
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=1_000)
    args = parser.parse_args()
    for stop_days in (10, 20):
        run_months(stop_days)
    run_cycles(args.cycles, args.sample)


if __name__ == "__main__":
    main()
