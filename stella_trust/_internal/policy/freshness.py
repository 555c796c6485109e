"""Freshness from signed expiry only (docs/design.md, decision 3)."""

from __future__ import annotations

from datetime import datetime, timedelta

from stella_trust._internal.timefmt import iso
from stella_trust.errors import StaleTrustError
from stella_trust.view import Freshness, FreshnessState, TrustView


def compute_freshness(expiries: dict[str, datetime], threshold: timedelta, now: datetime) -> Freshness:
    """E = the earliest signed expiry: fresh before E, grace until E + threshold, stale after."""
    role = min(expiries, key=lambda r: expiries[r])
    earliest = expiries[role]
    try:
        stale_after = earliest + threshold
    except OverflowError:  # a threshold reaching past year 9999: never stale by the clock
        stale_after = datetime.max.replace(tzinfo=earliest.tzinfo)
    if now < earliest:
        state = FreshnessState.FRESH
    elif now < stale_after:
        state = FreshnessState.GRACE
    else:
        state = FreshnessState.STALE
    return Freshness(state, earliest, stale_after, role)


def require_usable(view: TrustView, now: datetime) -> TrustView:
    """Stale trust is refused to every consumer (decision 3); a view opened while fresh and
    kept by a long-running attestor turns stale by the clock (`now`, the caller's), not by
    when it was built."""
    if not view.usable or max(now, view.at) >= view.freshness.stale_after:
        raise StaleTrustError(
            f"Trust is stale: signed metadata expired at {iso(view.freshness.expires)} "
            f"and the grace period ended at {iso(view.freshness.stale_after)}"
        )
    return view
