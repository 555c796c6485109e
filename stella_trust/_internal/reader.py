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
from stella_trust._internal.store import Store
from stella_trust._internal.timefmt import utcnow
from stella_trust._internal.tuf.offline import VerifiedTrust, verify_generation
from stella_trust._internal.tuf.rollback import rollback_violations
from stella_trust._internal.verifiers import require_usable
from stella_trust.errors import CacheVerificationError
from stella_trust.view import TrustView


def verified_current(store: Store) -> VerifiedTrust:
    """The current generation, verified from the anchor and checked against the floor.

    A writer may switch and prune generations while we read: one retry on the new one.
    """
    anchor = store.read_anchor()
    for attempt in range(2):
        generation = store.current()
        if generation is None:
            raise CacheVerificationError(f"cache {store.root} holds no trust yet", hint="run `trust sync`")
        try:
            verified = verify_generation(generation, anchor)
            break
        except CacheVerificationError:
            latest = store.current()
            if attempt == 0 and latest is not None and latest.path != generation.path:
                continue
            raise
    lower = rollback_violations(store.read_state().floor, verified.metadata)
    if lower:
        raise CacheVerificationError(
            f"cache holds older trust than this host already committed: {', '.join(lower)}",
            hint="the cache was rolled back on disk; run `trust sync` to restore current trust",
        )
    return verified


def load_view(settings: TrustRepoSettings, store: Store, now: datetime | None = None) -> TrustView:
    """Re-verify the current generation from the anchor and build the view (stale allowed)."""
    verified = verified_current(store)
    return build_view(verified, settings, store.read_state(), now or utcnow())


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
    return view if allow_stale else require_usable(view)
