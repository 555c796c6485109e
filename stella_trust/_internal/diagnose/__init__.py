"""`trust doctor`'s checks: this host, end to end, one verdict per check.

Each check returns a `Check` (ok / warn / fail, one line of detail, a hint for anything not
ok). They use the same code as the commands they stand for: settings load like every
command, trust re-verifies through `reader.load_view` from the anchor the config pins, and
the cache is proven writable by creating a file in it, not by reading its mode bits. Checks
that depend on an earlier one (freshness on verified trust, the clock on an answer from the
repository) are left out when it failed: one cause, one `fail` line.

Bounded: the one network request (the repository's `timestamp.json`) goes through the
fetcher a sync uses, with one deadline of `remote.PROBE_SECONDS` for the whole request, so a
host whose network hangs still gets its report. `local.py` holds the checks of this host,
`remote.py` those that ask the repository, `result.py` the verdict type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from stella_trust._internal.diagnose.local import (
    check_anchor,
    check_cache,
    check_config,
    check_freshness,
    check_last_sync,
    check_metrics,
    check_pins,
    check_trust,
)
from stella_trust._internal.diagnose.remote import check_clock, check_repository
from stella_trust._internal.diagnose.result import STATES, Check
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.timefmt import utcnow

__all__ = ["STATES", "Check", "run_checks"]


def run_checks(
    load: Callable[[], TrustRepoSettings], config: Path, now: Callable[[], datetime] = utcnow
) -> list[Check]:
    """Every check, in order; a check whose prerequisite failed is left out."""
    config_check, settings = check_config(load, config)
    checks = [config_check]
    if settings is None:
        return checks
    cache_check, readable = check_cache(settings.local_cache_path)
    checks.append(cache_check)
    if readable:
        store = Store.of(settings)
        anchor_check, anchored = check_anchor(store, config)
        checks.append(anchor_check)
        if anchored:
            moment = now()
            trust_check, view = check_trust(settings, store, moment)
            checks.append(trust_check)
            if view is not None:
                checks.append(check_freshness(view, settings, moment))
                checks.append(check_pins(view))
            checks.append(check_last_sync(settings, store, moment))
    repository_check, probe = check_repository(settings)
    checks.append(repository_check)
    clock_check = check_clock(settings, probe)
    if clock_check is not None:
        checks.append(clock_check)
    checks.append(check_metrics(settings, now()))
    return checks
