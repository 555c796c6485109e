"""The library API: `open_trust()` re-verifies the cache and returns a `TrustView`.

Attestors call this instead of reading our files: every call re-verifies the chain
from the trust anchor and every target hash (DESIGN decision 2), then refuses stale
trust unless the caller explicitly asks to inspect it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stella_trust.errors import CacheVerificationError, StaleTrustError, UnknownTargetError
from stella_trust.settings import TrustRepoSettings, load_settings
from stella_trust.store import CacheState, Store
from stella_trust.trust import (
    STALE,
    KeyFact,
    RoleInfo,
    TargetEntry,
    TrustView,
    certificate_facts,
    compute_freshness,
    iso,
    match_name,
    parse_service_map,
    public_key_facts,
    resolve_endpoints,
)
from stella_trust.verify import VerifiedTrust, rollback_violations, verify_generation


def build_view(
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    store_state: CacheState | None,
    now: datetime,
) -> TrustView:
    """A TrustView from verified bytes; raises if the service map or pins do not hold."""
    stored = list(verified.target_info)

    def resolve(name: str) -> str:
        try:
            return match_name(name, stored)
        except UnknownTargetError as exc:
            raise CacheVerificationError(
                f"{exc.message} (not in the cache)", hint="run `trust sync`"
            ) from exc

    if settings.service_map_file is not None:
        service_map = parse_service_map(
            settings.service_map_file.read_bytes(), f"file:{settings.service_map_file}"
        )
        map_target = None
    else:
        map_target = resolve(settings.service_map_target)
        service_map = parse_service_map(verified.read_target(map_target), map_target)

    keys: dict[str, KeyFact] = {}
    certificates = []
    for name in stored:
        info = verified.target_info[name]
        if info.length > (1 << 20):
            continue
        data = verified.read_target(name)
        fact = public_key_facts(name, data)
        if fact is not None:
            keys[name] = fact
        certificates.extend(certificate_facts(name, data))

    endpoints = resolve_endpoints(service_map, settings.environment, keys, resolve)
    pinned = {resolve(pin) for pin in settings.pins}
    referenced = {resolve(ref) for ref in service_map.referenced_targets(settings.environment)}

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
    expiries = {**md.expiries, **md.delegated_expiries}
    freshness = compute_freshness(expiries, timedelta(seconds=settings.freshness_threshold_seconds), now)
    state = store_state or CacheState()
    return TrustView(
        tuf_url=settings.tuf_url,
        environment=settings.environment,
        offline_mode=settings.offline_mode,
        freshness=freshness,
        roles={role: RoleInfo(md.versions[role], md.expiries[role]) for role in md.versions},
        targets=targets,
        keys=list(keys.values()),
        certificates=certificates,
        service_map=service_map,
        endpoints=endpoints,
        last_sync=state.last_sync,
        last_error=state.last_error,
        source=state.source,
    )


def load_view(settings: TrustRepoSettings, store: Store, now: datetime | None = None) -> TrustView:
    """Re-verify the current generation from the anchor and build the view (stale allowed)."""
    anchor = store.read_anchor()
    moment = now or datetime.now(UTC)
    for attempt in range(2):
        generation = store.current()
        if generation is None:
            raise CacheVerificationError(f"cache {store.root} holds no trust yet", hint="run `trust sync`")
        try:
            verified = verify_generation(generation, anchor)
            break
        except CacheVerificationError:
            # A writer may have switched and pruned generations under us: look once more.
            latest = store.current()
            if attempt == 0 and latest is not None and latest.path != generation.path:
                continue
            raise
    state = store.read_state()
    lower = rollback_violations(state.floor, verified.metadata)
    if lower:
        raise CacheVerificationError(
            f"cache holds older trust than this host already committed: {', '.join(lower)}",
            hint="the cache was rolled back on disk; run `trust sync` to restore current trust",
        )
    return build_view(verified, settings, state, moment)


def open_trust(
    cache_dir: Path | str | None = None,
    *,
    config_path: Path | str | None = None,
    now: datetime | None = None,
    allow_stale: bool = False,
) -> TrustView:
    """Verified, fresh (or in-grace) trust for an attestor; raises StellaError otherwise.

    `cache_dir` defaults to the configured `local_cache_path`. Stale trust raises
    `StaleTrustError` unless `allow_stale=True` (for display, never for verification).
    """
    overrides: dict[str, Any] = {}
    if cache_dir is not None:
        overrides["local_cache_path"] = Path(cache_dir)
    settings = load_settings(Path(config_path) if config_path else None, overrides)
    view = load_view(settings, Store(settings.local_cache_path), now)
    if view.freshness.state == STALE and not allow_stale:
        raise StaleTrustError(
            f"Trust is stale: signed metadata expired at {iso(view.freshness.expires)} "
            f"and the grace period ended at {iso(view.freshness.stale_after)}"
        )
    return view
