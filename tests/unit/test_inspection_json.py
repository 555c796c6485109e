"""`snapshot inspect --json` keeps its file entries' shape now that they are typed (FileCheck):
the same keys in the same order, and `found_*` only where a member did not match."""

from __future__ import annotations

from datetime import UTC, datetime

from stella_trust._internal.bundle.inspection import FileCheck, Verification
from stella_trust.view import Freshness, FreshnessState

DIGEST = "ab" * 32
OTHER = "cd" * 32


def test_each_state_has_the_keys_and_order_it_had() -> None:
    ok = FileCheck("metadata/1.root.json", 10, DIGEST, "ok").to_json()
    missing = FileCheck("targets/x.pub", 10, DIGEST, "missing").to_json()
    mismatch = FileCheck("targets/x.pub", 10, DIGEST, "mismatch", (11, OTHER)).to_json()
    assert list(ok.items()) == [
        ("path", "metadata/1.root.json"),
        ("length", 10),
        ("sha256", DIGEST),
        ("state", "ok"),
    ]
    assert list(missing) == ["path", "length", "sha256", "state"] and missing["state"] == "missing"
    assert list(mismatch.items()) == [
        ("path", "targets/x.pub"),
        ("length", 10),
        ("sha256", DIGEST),
        ("state", "mismatch"),
        ("found_length", 11),
        ("found_sha256", OTHER),
    ]


def test_the_verdicts_freshness_is_shown_as_the_view_shows_it() -> None:
    freshness = Freshness(
        FreshnessState.GRACE,
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 8, tzinfo=UTC),
        "timestamp",
    )
    shown = Verification("verified", versions={"root": 1}, freshness=freshness, changed=True).to_json()
    assert shown["freshness"] == {
        "state": "grace",
        "expires": "2030-01-01T00:00:00Z",
        "stale_after": "2030-01-08T00:00:00Z",
        "earliest_role": "timestamp",
    }
    assert Verification("skipped", "not requested").to_json()["freshness"] is None
