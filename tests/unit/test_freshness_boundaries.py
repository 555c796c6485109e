"""Freshness at its boundaries, judged from signed expiries and an injected `now`, and the
package's lazily imported public names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import stella_trust
from stella_trust._internal.policy.freshness import compute_freshness
from stella_trust.view import FreshnessState

FRESH, GRACE, STALE = FreshnessState.FRESH, FreshnessState.GRACE, FreshnessState.STALE
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_compute_freshness_boundaries() -> None:
    expiries = {"root": T0 + timedelta(days=300), "timestamp": T0, "snapshot": T0 + timedelta(days=6)}
    week = timedelta(days=7)
    assert compute_freshness(expiries, week, T0 - timedelta(seconds=1)).state == FRESH
    at_expiry = compute_freshness(expiries, week, T0)
    assert at_expiry.state == GRACE
    assert at_expiry.earliest_role == "timestamp"
    assert at_expiry.expires == T0 and at_expiry.stale_after == T0 + week
    assert compute_freshness(expiries, week, T0 + week - timedelta(seconds=1)).state == GRACE
    assert compute_freshness(expiries, week, T0 + week).state == STALE
    assert compute_freshness(expiries, timedelta(0), T0).state == STALE


def test_lazy_package_attributes() -> None:
    assert stella_trust.TrustView.__name__ == "TrustView"
    with pytest.raises(AttributeError):
        _ = stella_trust.nothing_here  # type: ignore[attr-defined]
