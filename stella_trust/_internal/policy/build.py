"""Building the TrustView from verified trust (pure: metadata, bytes, a policy and `now`
in, a view out; no settings, store or file: `hostpolicy.py` reads those).

Sync and bundle import call this before they commit, so a generation that would not
yield a usable view (service map or trusted root missing, pins absent, log ID wrong)
never replaces the trust a host holds.
"""

from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from stella_trust._internal.policy.facts import certificate_facts, public_key_facts
from stella_trust._internal.policy.freshness import compute_freshness
from stella_trust._internal.policy.inputs import (
    LEGACY,
    SERVICE_MAP,
    SIGSTORE,
    Recorded,
    TrustPolicy,
    Value,
    VerifiedTargets,
)
from stella_trust._internal.policy.names import match_name
from stella_trust._internal.policy.sources import lists, source_kinds
from stella_trust._internal.policy.trustroot import (
    SigstoreSource,
    endpoints_from_sigstore,
    from_repository,
    from_service_map,
)
from stella_trust._internal.tuf.offline import VerifiedMetadata
from stella_trust.errors import CacheVerificationError, UnknownTargetError
from stella_trust.view import CertFact, Freshness, KeyFact, RoleInfo, TargetEntry, TrustView


def freshness_of(md: VerifiedMetadata, policy: TrustPolicy, now: datetime) -> Freshness:
    """Freshness over every role the verification visited (delegated roles count)."""
    expiries = {**md.expiries, **md.delegated_expiries}
    return compute_freshness(expiries, policy.freshness_threshold, now)


class ViewParts(Value):
    """A view and what judging it at another `now` needs (`view_at`): only freshness, `at`
    and, without a service map, the endpoints (validity windows) depend on the time."""

    __slots__ = ("metadata", "policy", "sigstore", "view")
    view: TrustView
    metadata: VerifiedMetadata
    policy: TrustPolicy
    sigstore: SigstoreSource | None  # endpoints come from it (no service map)

    def __init__(
        self,
        view: TrustView,
        metadata: VerifiedMetadata,
        policy: TrustPolicy,
        sigstore: SigstoreSource | None,
    ) -> None:
        """The view and the inputs it was built from."""
        self._set(view=view, metadata=metadata, policy=policy, sigstore=sigstore)


def build_view(
    md: VerifiedMetadata,
    targets: VerifiedTargets,
    policy: TrustPolicy,
    recorded: Recorded,
    now: datetime,
) -> TrustView:
    """A TrustView from verified metadata and target bytes; raises if the trust sources or
    pins do not hold. `recorded` (last sync, error, source, retired pins) is shown only."""
    return build_parts(md, targets, policy, recorded, now).view


def view_at(parts: ViewParts, now: datetime) -> TrustView:
    """The same verified trust judged at `now`: what build_view would return at `now` for
    the same inputs, without re-parsing keys, certificates and the trusted root (an
    attestor's open_trust() on an unchanged cache)."""
    changes: dict[str, Any] = {"at": now, "freshness": freshness_of(parts.metadata, parts.policy, now)}
    if parts.sigstore is not None:
        changes["endpoints"] = endpoints_from_sigstore(parts.sigstore, now)
    return replace(parts.view, **changes)


def build_parts(
    md: VerifiedMetadata,
    targets: VerifiedTargets,
    policy: TrustPolicy,
    recorded: Recorded,
    now: datetime,
) -> ViewParts:
    """build_view, keeping what `view_at` needs."""
    stored = list(targets.info)

    def resolve(name: str) -> str:
        """A name the service map or the settings give, matched against the stored targets. One the
        verified generation does not hold (the settings changed since it was selected, or it was
        lost) is a cache that cannot serve this host (exit 3, mended by a sync)."""
        try:
            return match_name(name, stored)
        except UnknownTargetError as exc:
            raise CacheVerificationError(
                f"{exc.message} (not in the cache)", hint="run `trust sync`"
            ) from exc

    sources = source_kinds(policy, stored, lambda: _publishes_legacy(targets))
    keys: dict[str, KeyFact] = {}
    certificates: list[CertFact] = []
    for name in stored:
        data = targets.contents.get(name)
        if data is None:  # too large to be a key or a certificate
            continue
        fact = public_key_facts(name, data)
        if fact is not None:
            keys[name] = fact
        certificates.extend(certificate_facts(name, data))

    roles_of: dict[str, str] = {}
    service_map = None
    judged_sigstore: SigstoreSource | None = None
    if SERVICE_MAP in sources:
        from stella_trust._internal.policy.servicemap import (
            local_service_map,
            parse_service_map,
            referenced_targets,
            resolve_endpoints,
        )

        if policy.local_service_map is not None:
            service_map = local_service_map(policy.local_service_map)
        else:
            map_target = resolve(policy.service_map_target)
            service_map = parse_service_map(targets.bytes_of(map_target), map_target)
            roles_of[map_target] = "service-map"
        endpoints = resolve_endpoints(service_map, policy.environment, keys, resolve)
        for ref in referenced_targets(service_map, policy.environment):
            roles_of.setdefault(resolve(ref), "referenced")
    if LEGACY in sources:
        seen = {
            digest: moment
            for digest, text in recorded.legacy_expired.items()
            if (moment := _recorded_moment(text)) is not None
        }
        from stella_trust._internal.policy.legacy import from_legacy

        sigstore, legacy_roles = from_legacy(targets, seen, now)
        roles_of.update(legacy_roles)
        endpoints = endpoints_from_sigstore(sigstore, now)
        judged_sigstore = sigstore
    elif SIGSTORE in sources:
        sigstore = from_repository(policy, targets, resolve)
        assert sigstore.trusted_root_target is not None
        roles_of.setdefault(sigstore.trusted_root_target, "trusted-root")
        if sigstore.signing_config_target:
            roles_of.setdefault(sigstore.signing_config_target, "signing-config")
        if service_map is None:
            endpoints = endpoints_from_sigstore(sigstore, now)
            judged_sigstore = sigstore
    else:
        sigstore = from_service_map(endpoints, keys, targets, resolve)
    pinned, missing = set(), []
    for pin in policy.pins(sources):
        if lists(pin, stored):
            pinned.add(resolve(pin))
        else:  # not yet fetched, or retired upstream: reported, not an unusable cache
            missing.append(pin)

    entries = []
    for name in stored:
        info = targets.info[name]
        custom = info.unrecognized_fields.get("custom")
        entries.append(
            TargetEntry(
                name=name,
                length=info.length,
                sha256=info.hashes.get("sha256", ""),
                custom=custom if isinstance(custom, dict) else None,
                pinned=name in pinned,
                role=roles_of.get(name, "pinned"),
            )
        )

    view = TrustView(
        tuf_url=policy.tuf_url,
        environment=policy.environment,
        offline_mode=policy.offline_mode,
        at=now,
        freshness=freshness_of(md, policy, now),
        roles=MappingProxyType(  # read-only: a view handed to an attestor cannot be edited
            {
                **{role: RoleInfo(md.versions[role], md.expiries[role]) for role in md.versions},
                **{role: RoleInfo(v, expires) for role, (v, expires) in md.delegated_roles.items()},
            }
        ),
        targets=tuple(entries),
        keys=tuple(keys.values()),
        certificates=tuple(certificates),
        sources=sources,
        service_map=service_map,
        endpoints=endpoints,
        sigstore=sigstore.trust,
        missing_pins=tuple(missing),
        retired_pins=tuple(p for p in recorded.retired_pins if p in missing),
        trusted_root_json=sigstore.trusted_root_json,
        signing_config_json=sigstore.signing_config_json,
        last_sync=_recorded_moment(recorded.last_sync),
        last_error=recorded.last_error,
        source=MappingProxyType(dict(recorded.source)),
    )
    return ViewParts(view, md, policy, judged_sigstore)


def _publishes_legacy(targets: VerifiedTargets) -> bool:
    """Whether the targets' signed custom metadata marks a legacy Rekor key (policy/legacy.py),
    imported only when asked: a host with a service map or a trusted root never needs it."""
    from stella_trust._internal.policy.legacy import legacy_targets, publishes_legacy

    return publishes_legacy(legacy_targets(targets.info))


def _recorded_moment(text: str | None) -> datetime | None:
    """state.json's informational time as a datetime; unreadable (an edited state) is None,
    never a refusal: it is not trust (decision 16)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
