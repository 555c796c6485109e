"""Building the TrustView from a verified generation (pure: bytes and `now` in, view out).

Sync and bundle import call this before they commit, so a generation that would not
yield a usable view (service map missing, pins absent, log ID wrong) never replaces
the trust a host holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stella_trust._internal.policy.facts import certificate_facts, public_key_facts
from stella_trust._internal.policy.freshness import compute_freshness
from stella_trust._internal.policy.names import match_name
from stella_trust._internal.policy.servicemap import (
    parse_service_map,
    read_local_service_map,
    referenced_targets,
    resolve_endpoints,
)
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import CacheState
from stella_trust._internal.tuf.offline import SMALL_TARGET, VerifiedMetadata, VerifiedTrust
from stella_trust.errors import CacheVerificationError, UnknownTargetError
from stella_trust.view import CertFact, Freshness, KeyFact, RoleInfo, TargetEntry, TrustView


def freshness_of(md: VerifiedMetadata, settings: TrustRepoSettings, now: datetime) -> Freshness:
    """Freshness over every role the verification visited (delegated roles count)."""
    expiries = {**md.expiries, **md.delegated_expiries}
    return compute_freshness(expiries, timedelta(seconds=settings.freshness_threshold_seconds), now)


def build_view(
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    state: CacheState | None,
    now: datetime,
) -> TrustView:
    """A TrustView from verified bytes; raises if the service map or pins do not hold.

    `state` is the store's CacheState (last sync, error, source), informational only.
    """
    stored = list(verified.target_info)

    def resolve(name: str) -> str:
        try:
            return match_name(name, stored)
        except UnknownTargetError as exc:
            raise CacheVerificationError(
                f"{exc.message} (not in the cache)", hint="run `trust sync`"
            ) from exc

    if settings.service_map_file is not None:
        service_map = read_local_service_map(settings.service_map_file)
        map_target = None
    else:
        map_target = resolve(settings.service_map_target)
        service_map = parse_service_map(verified.read_target(map_target), map_target)

    keys: dict[str, KeyFact] = {}
    certificates: list[CertFact] = []
    for name in stored:
        if verified.target_info[name].length > SMALL_TARGET:
            continue
        data = verified.read_target(name)
        fact = public_key_facts(name, data)
        if fact is not None:
            keys[name] = fact
        certificates.extend(certificate_facts(name, data))

    endpoints = resolve_endpoints(service_map, settings.environment, keys, resolve)
    pinned = {resolve(pin) for pin in settings.pins}
    referenced = {resolve(ref) for ref in referenced_targets(service_map, settings.environment)}

    targets = []
    for name in stored:
        info = verified.target_info[name]
        custom = info.unrecognized_fields.get("custom")
        role = "service-map" if name == map_target else "referenced" if name in referenced else "pinned"
        targets.append(
            TargetEntry(
                name=name,
                length=info.length,
                sha256=info.hashes.get("sha256", ""),
                custom=custom if isinstance(custom, dict) else None,
                pinned=name in pinned,
                role=role,
            )
        )

    md = verified.metadata
    return TrustView(
        tuf_url=settings.tuf_url,
        environment=settings.environment,
        offline_mode=settings.offline_mode,
        freshness=freshness_of(md, settings, now),
        roles={role: RoleInfo(md.versions[role], md.expiries[role]) for role in md.versions},
        targets=tuple(targets),
        keys=tuple(keys.values()),
        certificates=tuple(certificates),
        service_map=service_map,
        endpoints=endpoints,
        last_sync=state.last_sync if state else None,
        last_error=state.last_error if state else None,
        source=dict(state.source) if state else {},
    )
