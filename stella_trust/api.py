"""The public API: what programs call to use a host's trust (listed in `stella_trust.__all__`).

- `open_trust()`: verified, fresh (or in-grace) trust as a frozen `TrustView`; raises a
  `StellaError` otherwise. One `VerificationMemo` per process remembers what was verified
  (decision 13): an unchanged cache costs a stat of each file it verified.
- `TrustWatcher`: a long-lived handle with its own memo, which says when the trust changed.
- `verify_bundle()`: a Sigstore bundle verified offline with an open view's trust; the
  verifier built from a trusted root is remembered in the same process memo.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime
from pathlib import Path

from stella_trust._internal import reader
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.policy.freshness import require_usable
from stella_trust._internal.sigstore.outcome import VerificationOutcome
from stella_trust._internal.timefmt import utcnow
from stella_trust._internal.verifiers import verify_with_trust
from stella_trust._internal.verify_inputs import make_policy
from stella_trust.view import TrustView

_PROCESS = VerificationMemo()  # open_trust()'s and verify_bundle()'s memory for the life of this process
__all__ = ["TrustWatcher", "open_trust", "verify_bundle"]


def open_trust(
    cache_dir: Path | str | None = None,
    *,
    config_path: Path | str | None = None,
    now: datetime | None = None,
    allow_stale: bool = False,
    allow_env_service_map: bool = False,
    instance: str | None = None,
) -> TrustView:
    """Verified, fresh (or in-grace) trust for an attestor; raises StellaError otherwise.

    `cache_dir` defaults to the configured `local_cache_path`. Stale trust raises
    `StaleTrustError` unless `allow_stale=True` (for display, never for verification).
    STELLA_SIGSTORE_SERVICE_MAP (which replaces the signed service map) is ignored unless
    `allow_env_service_map=True`: an attestor's environment is not the operator's word.
    `instance` names one of the config's `instances:` (None: the instance `default`); with
    `cache_dir` it reads `<cache_dir>/instances/<NAME>/`, as `trust --cache-dir` does.
    """
    return reader.open_trust(
        cache_dir,
        config_path=config_path,
        now=now,
        allow_stale=allow_stale,
        allow_env_service_map=allow_env_service_map,
        memo=_PROCESS,
        instance=instance,
    )


def verify_bundle(
    view: TrustView,
    bundle: bytes,
    artifact: bytes | str,
    *,
    identity: str | None = None,
    identity_regexp: str | None = None,
    issuer: str | None = None,
    issuer_regexp: str | None = None,
    key_pem: bytes | None = None,
) -> VerificationOutcome:
    """Verify a Sigstore bundle offline with the trust of an open `TrustView`.

    `artifact` is the artifact's bytes or `"sha256:<hex>"`. Raises StaleTrustError for
    stale trust and BundleVerificationError (its `check` names identity, digest, signature,
    log inclusion, SCT, timestamp or chain) when the bundle does not verify. The verifier
    built from the view's trusted root is kept for later calls with the same trust.
    """
    policy = make_policy(
        identity=identity,
        identity_regexp=identity_regexp,
        issuer=issuer,
        issuer_regexp=issuer_regexp,
        key_pem=key_pem,
    )
    trusted_root_json = require_usable(view, utcnow()).trusted_root_json
    return verify_with_trust(trusted_root_json, bundle, artifact, policy, memo=_PROCESS)


def _material(view: TrustView) -> str:
    """What a verifier is built from: role versions and every held target's digest."""
    parts = [f"{role}={info.version}" for role, info in sorted(view.roles.items())]
    parts += [f"{target.name}={target.sha256}" for target in view.targets]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class TrustWatcher:
    """Verified trust for a long-running consumer, re-verified only when the cache changes.

    Example::

        watcher = TrustWatcher(config_path="/etc/stella-trust/trust.yaml")
        view = watcher.view()            # verified from the anchor once
        ...
        view = watcher.view()            # unchanged cache: the memo, no signature checks
        if watcher.changed:              # the agent committed new trust since the last call
            rebuild_verifier(view)
    """

    def __init__(
        self,
        cache_dir: Path | str | None = None,
        *,
        config_path: Path | str | None = None,
        allow_env_service_map: bool = False,
        instance: str | None = None,
    ) -> None:
        """Nothing is read until the first `view()`; the watcher keeps its own memo for its life, so
        an unchanged cache costs a look-up, not a verification (decision 13).
        STELLA_SIGSTORE_SERVICE_MAP is ignored unless `allow_env_service_map`: an attestor's
        environment is not the operator's word. `instance`: as for open_trust()."""
        self._cache_dir = cache_dir
        self._instance = instance
        self._config_path = config_path
        self._allow_env_service_map = allow_env_service_map
        self._lock = threading.Lock()
        self._memo = VerificationMemo()  # this handle's own memory, for its life
        self._material: str | None = None
        self.changed = False  # the last view() returned other trust material than the one before

    def view(self, now: datetime | None = None, *, allow_stale: bool = False) -> TrustView:
        """Verified, fresh (or in-grace) trust; raises like open_trust() (stale, edited cache)."""
        current = reader.open_trust(
            self._cache_dir,
            config_path=self._config_path,
            now=now,
            allow_stale=allow_stale,
            allow_env_service_map=self._allow_env_service_map,
            memo=self._memo,
            instance=self._instance,
        )
        material = _material(current)
        with self._lock:
            self.changed = self._material is not None and material != self._material
            self._material = material
        return current

    def wait_for_change(self, timeout: float, *, interval: float = 1.0) -> TrustView | None:
        """Block until the trust material differs from the last view() (then return the new
        view) or `timeout` seconds pass (None). Each poll is a memo look-up, not a verification."""
        if self._material is None:
            self.view()
        deadline = time.monotonic() + timeout
        while True:
            current = self.view()
            if self.changed:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(interval, left))
