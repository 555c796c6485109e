"""The I/O side of the policy layer: this host's settings, state and verified files turned
into the frozen values `policy/` decides from (policy/inputs.py).

Everything that reads here is a read the caller would make anyway: the settings it loaded,
the state it read, the targets the verification already holds in memory, and the operator's
local service map (`service_map_file`), the one file a trust decision names.
"""

from __future__ import annotations

from datetime import datetime

from stella_trust._internal.cachestate import CacheState
from stella_trust._internal.policy.build import ViewParts, build_parts, build_view, freshness_of
from stella_trust._internal.policy.inputs import Recorded, TrustPolicy, VerifiedTargets
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.tuf.offline import VerifiedMetadata, VerifiedTrust
from stella_trust.errors import ServiceMapError
from stella_trust.view import Freshness, TrustView

MAX_SERVICE_MAP_BYTES = 1 << 20


def trust_policy(settings: TrustRepoSettings) -> TrustPolicy:
    """The settings fields a trust decision reads; the local service map read now."""
    local = None
    if settings.service_map_file is not None:
        from stella_trust._internal.credentials import as_invoker
        from stella_trust._internal.fs import read_untrusted

        path = settings.service_map_file
        try:
            with as_invoker():  # the operator's file, perhaps root-only (see credentials.py)
                data = read_untrusted(path.resolve(), MAX_SERVICE_MAP_BYTES, f"service map {path}")
            local = (str(path), data)
        except OSError as exc:
            raise ServiceMapError(
                f"Service map not found: {path} ({exc.strerror})",
                hint="STELLA_SIGSTORE_SERVICE_MAP / service_map_file must name a readable file",
            ) from exc
    return TrustPolicy(
        trust_source=settings.trust_source,
        service_map_target=settings.service_map_target,
        local_service_map=local,
        sigstore_trusted_root_target=settings.sigstore_trusted_root_target,
        sigstore_signing_config_targets=tuple(settings.sigstore_signing_config_targets),
        rekor_key_targets=tuple(settings.rekor_key_targets)
        if settings.rekor_key_targets is not None
        else None,
        pinned_targets=tuple(settings.pinned_targets),
        environment=settings.environment,
        freshness_threshold=settings.freshness_threshold,
        tuf_url=settings.tuf_url,
        offline_mode=settings.offline_mode,
    )


def recorded(state: CacheState | None) -> Recorded:
    """state.json's informational fields as the policy's frozen input; no state (a sync or an import
    judging the trust it is about to commit) records nothing."""
    if state is None:
        return Recorded()
    return Recorded(
        tuple(state.retired_pins),
        state.last_sync,
        state.last_error,
        dict(state.source),
        dict(state.legacy_expired),
    )


def targets_of(verified: VerifiedTrust) -> VerifiedTargets:
    """The verified targets as the policy takes them: signed info and the bytes already in memory."""
    return VerifiedTargets(verified.target_info, verified.contents)


def view_of(
    verified: VerifiedTrust, settings: TrustRepoSettings, state: CacheState | None, now: datetime
) -> TrustView:
    """policy.build_view for this host's verified trust."""
    return build_view(verified.metadata, targets_of(verified), trust_policy(settings), recorded(state), now)


def parts_of(
    verified: VerifiedTrust, settings: TrustRepoSettings, state: CacheState | None, now: datetime
) -> ViewParts:
    """policy.build_parts for this host's verified trust: the view, and what `view_at` needs to
    judge it again later."""
    return build_parts(verified.metadata, targets_of(verified), trust_policy(settings), recorded(state), now)


def freshness(md: VerifiedMetadata, settings: TrustRepoSettings, now: datetime) -> Freshness:
    """Freshness of verified metadata at `now` under this host's grace period (decision 3): the only
    setting it reads, so nothing else of the policy is built."""
    return freshness_of(md, TrustPolicy(freshness_threshold=settings.freshness_threshold), now)
