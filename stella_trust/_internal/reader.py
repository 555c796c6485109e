"""Reading cached trust: re-verify the current generation, then build the view.

Every read re-verifies the chain from the trust anchor and every target hash
(docs/design.md, decision 2) and checks the rollback floor, then refuses stale trust
unless the caller explicitly asks to inspect it. `open_trust()` is the public door.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from stella_trust._internal.policy.build import build_view
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import CacheState, Generation, Store
from stella_trust._internal.timefmt import utcnow
from stella_trust._internal.tuf.offline import VerifiedTrust, verify_generation
from stella_trust._internal.tuf.rollback import rollback_violations
from stella_trust._internal.verifiers import require_usable
from stella_trust.errors import CacheVerificationError
from stella_trust.view import TrustView


def verified_current(store: Store) -> VerifiedTrust:
    return verified_current_with_state(store)[0]


def verified_current_with_state(store: Store) -> tuple[VerifiedTrust, CacheState]:
    """The current generation, verified from the anchor and checked against the floor.

    A writer may switch generations (and raise the floor) while we read: the generation and
    the floor are compared only when `current` did not move in between, else read again, so
    a sync in progress never looks like a rollback (nor hides one).
    """
    anchor = store.read_anchor()
    for attempt in range(3):
        generation = store.current()
        if generation is None:
            raise CacheVerificationError(f"cache {store.root} holds no trust yet", hint="run `trust sync`")
        try:
            verified = verify_generation(generation, anchor, store.committed_roots_dir)
            state = store.read_state()
            lower = rollback_violations(state.floor, verified.metadata)
        except CacheVerificationError:
            if attempt < 2 and _moved(store, generation):
                continue
            raise
        if lower and attempt < 2 and _moved(store, generation):
            continue
        if lower:
            raise CacheVerificationError(
                f"cache holds older trust than this host already committed: {', '.join(lower)}",
                hint="the cache was rolled back on disk; run `trust sync` to restore current trust",
            )
        return verified, state
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _moved(store: Store, generation: Generation) -> bool:
    latest = store.current()
    return latest is not None and latest.path != generation.path


def load_view(settings: TrustRepoSettings, store: Store, now: datetime | None = None) -> TrustView:
    """Re-verify the current generation from the anchor and build the view (stale allowed)."""
    verified, state = verified_current_with_state(store)
    return build_view(verified, settings, state, now or utcnow())


def open_trust(
    cache_dir: Path | str | None = None,
    *,
    config_path: Path | str | None = None,
    now: datetime | None = None,
    allow_stale: bool = False,
    allow_env_service_map: bool = False,
) -> TrustView:
    """Verified, fresh (or in-grace) trust for an attestor; raises StellaError otherwise.

    `cache_dir` defaults to the configured `local_cache_path`. Stale trust raises
    `StaleTrustError` unless `allow_stale=True` (for display, never for verification).
    STELLA_SIGSTORE_SERVICE_MAP (which replaces the signed service map) is ignored unless
    `allow_env_service_map=True`: an attestor's environment is not the operator's word.
    """
    overrides: dict[str, Any] = {}
    if cache_dir is not None:
        overrides["local_cache_path"] = Path(cache_dir)
    settings = load_settings(
        Path(config_path) if config_path else None, overrides, env_service_map=allow_env_service_map
    )
    try:
        view = load_view(settings, Store.of(settings), now)
    except OSError as exc:
        raise CacheVerificationError(
            f"cache {settings.local_cache_path} is unreadable: {exc.strerror or exc}",
            hint="readers need the stella-trust group (the cache directory is 0750)",
        ) from exc
    return view if allow_stale else require_usable(view)
