"""The lifecycle soak, bounded for CI (issue 20): months of events through three hosts, the
invariants after every day, then a few hundred agent cycles with the resources they hold.
The long form (10,000 cycles, figures) is benchmarks/bench_lifecycle.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lifecycle import agent_cycles, months, python_tuf_clock, resources, start

pytestmark = pytest.mark.slow  # simulated months and campaigns: `-m 'not slow'` skips them


def test_months_of_events_keep_every_host_serving_and_healing(tmp_path: Path) -> None:
    world, clock = start(tmp_path)
    with python_tuf_clock(clock):
        log = months(world, stop_days=10)
    cli = [day["cli"] for day in log]
    assert "grace" in cli and "stale" in cli  # the stopped timer was felt, by signed expiry
    assert cli[-1] == "fresh" and all(day["agent"] == "fresh" for day in log[-3:])
    assert world.cli.failures and any("Rollback" in f for f in world.air.failures)
    assert any("signed by 1/2 keys" in f for f in world.cli.failures)  # the timer signing alone


def test_agent_cycles_hold_resources_flat(tmp_path: Path) -> None:
    world, clock = start(tmp_path)
    with python_tuf_clock(clock):
        world.refresh()
        agent_cycles(world, 120)
        before = resources(world.agent_host.store)
        agent_cycles(world, 480)
        after = resources(world.agent_host.store)
    for name in ("cache_bytes", "cache_files"):
        assert abs(after[name] - before[name]) <= 0.1 * before[name], (name, before, after)
    assert after["open_fds"] <= before["open_fds"] + 2, (before, after)
