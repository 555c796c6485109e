"""The policy's frozen values (policy/inputs.Value) and the cache's rollback floor per role
(cachestate.RoleFloor): what they were as NamedTuples, equality, hashing and immutability, without
a NamedTuple's cost at every start-up (issue 24)."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest

from stella_trust._internal.cachestate import RoleFloor, parse_floor
from stella_trust._internal.policy.build import ViewParts
from stella_trust._internal.policy.inputs import Recorded, TrustPolicy, VerifiedTargets
from stella_trust._internal.policy.trustroot import SigstoreSource


def test_defaults_equality_and_hash_follow_the_fields() -> None:
    policy = TrustPolicy()
    assert policy.trust_source == "auto" and policy.freshness_threshold == timedelta(days=7)
    assert policy.sigstore_signing_config_targets == ("signing_config.v0.2.json", "signing_config.json")
    assert policy == TrustPolicy() and hash(policy) == hash(TrustPolicy())
    assert policy != TrustPolicy(pinned_targets=("rekor-key-v2",))
    assert TrustPolicy("sigstore", "map") == TrustPolicy(trust_source="sigstore", service_map_target="map")
    assert Recorded() == Recorded((), None, None) and Recorded().source == {}
    assert Recorded(last_sync="2026-01-01T00:00:00Z") != Recorded()
    # values of different classes are never equal, even with equal fields
    assert VerifiedTargets({}, {}) != ViewParts(None, None, None, None)  # type: ignore[arg-type]
    assert "pinned_targets=('a',)" in repr(TrustPolicy(pinned_targets=("a",)))


def test_values_are_frozen() -> None:
    policy = TrustPolicy()
    with pytest.raises(AttributeError, match="frozen"):
        policy.trust_source = "sigstore"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del policy.tuf_url
    with pytest.raises(AttributeError):
        policy.unknown = 1  # type: ignore[attr-defined]
    source = SigstoreSource(None, b"{}", None, None, None)  # type: ignore[arg-type]
    assert source.log_targets == {} and isinstance(source.log_targets, MappingProxyType)
    with pytest.raises(AttributeError, match="frozen"):
        source.ca_target = "x"  # type: ignore[misc]
    assert policy == TrustPolicy()  # nothing was changed by the refused writes


def test_a_value_holding_an_unhashable_field_is_unhashable_like_a_tuple() -> None:
    with pytest.raises(TypeError):
        hash(VerifiedTargets({}, {}))


def test_a_role_floor_is_a_frozen_value_read_back_from_its_json() -> None:
    floor = RoleFloor(7, ("a", "b"))
    assert floor == RoleFloor(7, ("a", "b")) and hash(floor) == hash(RoleFloor(7, ("a", "b")))
    assert floor != RoleFloor(8, ("a", "b")) and floor != RoleFloor(7, ("a",))
    assert parse_floor({"targets": floor.to_json()}) == {"targets": floor}
    assert repr(floor) == "RoleFloor(version=7, keyids=('a', 'b'))"
    with pytest.raises(AttributeError, match="frozen"):
        floor.version = 1  # type: ignore[misc]
    assert floor.version == 7
