"""Freshness from signed expiry with `now` injected, and the library API consumers use."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

import stella_trust
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust.errors import StaleTrustError
from stella_trust.view import FreshnessState
from tests.conftest import ok
from tests.e2e.conftest import Client

FRESH, GRACE, STALE = FreshnessState.FRESH, FreshnessState.GRACE, FreshnessState.STALE

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_freshness_of_a_real_cache_with_injected_now(synced: Client) -> None:
    settings = load_settings(synced.config)
    store = Store(synced.cache)
    view = load_view(settings, store)
    expires = view.freshness.expires
    assert view.freshness.earliest_role == "timestamp"
    assert expires == view.roles["timestamp"].expires  # E comes from signed data only
    assert load_view(settings, store, expires - timedelta(seconds=1)).freshness.state == FRESH
    assert load_view(settings, store, expires + timedelta(seconds=1)).freshness.state == GRACE
    later = expires + timedelta(days=7, seconds=1)
    assert load_view(settings, store, later).freshness.state == STALE


def test_open_trust_refuses_stale_unless_asked(synced: Client) -> None:
    view = stella_trust.open_trust(synced.cache, config_path=synced.config)
    assert view.usable and view.rekor_log_id == view.key("rekor-key-v1").spki_sha256
    later = view.freshness.stale_after + timedelta(seconds=1)
    with pytest.raises(StaleTrustError) as caught:
        stella_trust.open_trust(synced.cache, config_path=synced.config, now=later)
    assert caught.value.exit_code == 3
    stale = stella_trust.open_trust(synced.cache, config_path=synced.config, now=later, allow_stale=True)
    assert stale.freshness.state == STALE and not stale.usable


@pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")
def test_status_exit_codes_follow_real_expiry(synced: Client) -> None:
    """The CLI judges freshness by its own clock: fresh (0), grace (0), stale (3); no sleeps."""
    status = ok(synced.status()).json()
    assert status["freshness"]["state"] == "fresh"
    expires = datetime.fromisoformat(status["freshness"]["expires"].replace("Z", "+00:00"))
    stale_after = datetime.fromisoformat(status["freshness"]["stale_after"].replace("Z", "+00:00"))
    synced.clock = f"@{int((expires + timedelta(hours=1)).timestamp())}"
    grace = ok(synced.status())
    assert grace.json()["freshness"]["state"] == "grace"
    assert "warning: signed metadata expired" in grace.err
    sync = synced.run("sync")
    assert sync.code == 1 and "TUF metadata expired" in sync.err  # online sync stays strict
    synced.clock = f"@{int((stale_after + timedelta(hours=1)).timestamp())}"
    stale = synced.run("status", "--json")
    assert stale.code == 3
    assert stale.json()["freshness"]["state"] == "stale"
    assert "trust is stale" in stale.err
