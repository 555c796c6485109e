"""Building the TrustView from a verified generation (pure: bytes and `now` in, view out).

Sync and bundle import call this before they commit, so a generation that would not
yield a usable view (service map or trusted root missing, pins absent, log ID wrong)
never replaces the trust a host holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from stella_trust._internal.policy.facts import certificate_facts, public_key_facts
from stella_trust._internal.policy.freshness import compute_freshness
from stella_trust._internal.policy.names import match_name
from stella_trust._internal.policy.servicemap import (
    parse_service_map,
    read_local_service_map,
    referenced_targets,
    resolve_endpoints,
)
from stella_trust._internal.policy.sources import lists, source_kinds
from stella_trust._internal.policy.trustroot import (
    SigstoreSource,
    endpoints_from_sigstore,
    from_repository,
    from_service_map,
)
from stella_trust._internal.settings import SERVICE_MAP, SIGSTORE, TrustRepoSettings
from stella_trust._internal.store import CacheState
from stella_trust._internal.tuf.offline import SMALL_TARGET, VerifiedMetadata, VerifiedTrust
from stella_trust.errors import CacheVerificationError, UnknownTargetError
from stella_trust.view import CertFact, Freshness, KeyFact, RoleInfo, TargetEntry, TrustView


def freshness_of(md: VerifiedMetadata, settings: TrustRepoSettings, now: datetime) -> Freshness:
    """Freshness over every role the verification visited (delegated roles count)."""
    expiries = {**md.expiries, **md.delegated_expiries}
    return compute_freshness(expiries, timedelta(seconds=settings.freshness_threshold_seconds), now)


@dataclass(frozen=True)
class ViewParts:
    """A view and what judging it at another `now` needs (`view_at`): only freshness, `at`
    and, without a service map, the endpoints (validity windows) depend on the time."""

    view: TrustView
    metadata: VerifiedMetadata
    settings: TrustRepoSettings
    sigstore: SigstoreSource | None  # endpoints come from it (no service map)


def build_view(
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    state: CacheState | None,
    now: datetime,
) -> TrustView:
    """A TrustView from verified bytes; raises if the trust sources or pins do not hold.

    `state` is the store's CacheState (last sync, error, source), informational only.
    """
    return build_parts(verified, settings, state, now).view


def view_at(parts: ViewParts, now: datetime) -> TrustView:
    """The same verified trust judged at `now`: what build_view would return at `now` for
    the same inputs, without re-parsing keys, certificates and the trusted root (issue 13:
    an attestor's open_trust() on an unchanged cache)."""
    changes: dict[str, Any] = {"at": now, "freshness": freshness_of(parts.metadata, parts.settings, now)}
    if parts.sigstore is not None:
        changes["endpoints"] = endpoints_from_sigstore(parts.sigstore, now)
    return replace(parts.view, **changes)


def build_parts(
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    state: CacheState | None,
    now: datetime,
) -> ViewParts:
    """build_view, keeping what `view_at` needs."""
    stored = list(verified.target_info)

    def resolve(name: str) -> str:
        try:
            return match_name(name, stored)
        except UnknownTargetError as exc:
            raise CacheVerificationError(
                f"{exc.message} (not in the cache)", hint="run `trust sync`"
            ) from exc

    sources = source_kinds(settings, stored)
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

    roles_of: dict[str, str] = {}
    service_map = None
    judged_sigstore: SigstoreSource | None = None
    if SERVICE_MAP in sources:
        if settings.service_map_file is not None:
            service_map = read_local_service_map(settings.service_map_file)
        else:
            map_target = resolve(settings.service_map_target)
            service_map = parse_service_map(verified.read_target(map_target), map_target)
            roles_of[map_target] = "service-map"
        endpoints = resolve_endpoints(service_map, settings.environment, keys, resolve)
        for ref in referenced_targets(service_map, settings.environment):
            roles_of.setdefault(resolve(ref), "referenced")
    if SIGSTORE in sources:
        sigstore = from_repository(settings, verified, resolve)
        assert sigstore.trusted_root_target is not None
        roles_of.setdefault(sigstore.trusted_root_target, "trusted-root")
        if sigstore.signing_config_target:
            roles_of.setdefault(sigstore.signing_config_target, "signing-config")
        if service_map is None:
            endpoints = endpoints_from_sigstore(sigstore, now)
            judged_sigstore = sigstore
    else:
        sigstore = from_service_map(endpoints, keys, verified, resolve)
    pinned, missing = set(), []
    for pin in settings.pins(sources):
        if lists(pin, stored):
            pinned.add(resolve(pin))
        else:  # not yet fetched, or retired upstream: reported, not an unusable cache
            missing.append(pin)

    targets = []
    for name in stored:
        info = verified.target_info[name]
        custom = info.unrecognized_fields.get("custom")
        targets.append(
            TargetEntry(
                name=name,
                length=info.length,
                sha256=info.hashes.get("sha256", ""),
                custom=custom if isinstance(custom, dict) else None,
                pinned=name in pinned,
                role=roles_of.get(name, "pinned"),
            )
        )

    md = verified.metadata
    view = TrustView(
        tuf_url=settings.tuf_url,
        environment=settings.environment,
        offline_mode=settings.offline_mode,
        at=now,
        freshness=freshness_of(md, settings, now),
        roles={
            **{role: RoleInfo(md.versions[role], md.expiries[role]) for role in md.versions},
            **{role: RoleInfo(version, expires) for role, (version, expires) in md.delegated_roles.items()},
        },
        targets=tuple(targets),
        keys=tuple(keys.values()),
        certificates=tuple(certificates),
        sources=sources,
        service_map=service_map,
        endpoints=endpoints,
        sigstore=sigstore.trust,
        missing_pins=tuple(missing),
        retired_pins=tuple(p for p in (state.retired_pins if state else []) if p in missing),
        trusted_root_json=sigstore.trusted_root_json,
        signing_config_json=sigstore.signing_config_json,
        last_sync=state.last_sync if state else None,
        last_error=state.last_error if state else None,
        source=dict(state.source) if state else {},
    )
    return ViewParts(view, md, settings, judged_sigstore)
