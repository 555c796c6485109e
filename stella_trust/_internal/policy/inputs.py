"""What the pure policy layer is given: small frozen values, never settings, a store or files.

This is python-tuf's split (its `TrustedMetadataSet` takes bytes, its `Updater` does the
I/O): `reader`, `sync` and the bundle importer read the config, the cache and the operator's
local service map, and hand `policy/` these values; `policy/` decides from them and `now`.

They are NamedTuples, not frozen dataclasses: the same immutability and equality, and Python
3.11 builds a frozen dataclass with six exec() calls (~0.8 ms each class) on every start-up
of `trust status` (issue 24). The public types (view.py, sigstore_types.py) stay dataclasses.
Nor are annotations postponed here: a NamedTuple's string annotations are compiled into
`ForwardRef`s at every start-up.
"""

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from tuf.api.metadata import TargetFile

SERVICE_MAP, SIGSTORE = "service-map", "sigstore"  # the trust source kinds (TrustView.sources)
LEGACY = "legacy"  # Sigstore's separate key/chain targets with custom metadata (policy/legacy.py)
DEFAULT_REKOR_KEY_TARGETS = ("rekor-key-v1",)
_NOTHING: Mapping[str, Any] = MappingProxyType({})  # a shared default no one can fill


class TrustPolicy(NamedTuple):
    """The settings fields a trust decision reads (docs/design.md, Trust sources, Names)."""

    trust_source: str = "auto"
    service_map_target: str = "sigstore-services-v1"
    # the operator's local service map (service_map_file): its name and bytes, read by the caller
    local_service_map: tuple[str, bytes] | None = None
    sigstore_trusted_root_target: str = "trusted_root.json"
    sigstore_signing_config_targets: tuple[str, ...] = ("signing_config.v0.2.json", "signing_config.json")
    rekor_key_targets: tuple[str, ...] | None = None
    pinned_targets: tuple[str, ...] = ()
    environment: str | None = None
    freshness_threshold: timedelta = timedelta(days=7)
    # shown in the view, never decided on
    tuf_url: str | None = None
    offline_mode: bool = False

    def pins(self, sources: tuple[str, ...]) -> list[str]:
        """Every other target the host keeps, in order, without duplicates. The Rekor key
        default names a StellaOps target, so it applies to service-map repositories only."""
        rekor = self.rekor_key_targets
        if rekor is None:
            rekor = DEFAULT_REKOR_KEY_TARGETS if SERVICE_MAP in sources else ()
        return list(dict.fromkeys([*rekor, *self.pinned_targets]))


class Recorded(NamedTuple):
    """What the host recorded last (state.json): informational, shown in the view, and the
    pins the repository retired (decision 16)."""

    retired_pins: tuple[str, ...] = ()
    last_sync: str | None = None
    last_error: str | None = None
    source: Mapping[str, Any] = _NOTHING
    # legacy targets (by SHA-256) and when this host first saw each marked Expired (ISO 8601)
    legacy_expired: Mapping[str, str] = _NOTHING


class VerifiedTargets(NamedTuple):
    """The verified targets a view is built from: their signed info, and the bytes of the
    ones small enough to hold (the keys, chains, maps and trusted roots a view parses)."""

    info: Mapping[str, TargetFile]
    contents: Mapping[str, bytes]

    def bytes_of(self, name: str) -> bytes:
        """The bytes of a target parsed as trust material; a target too large to have been held in
        memory cannot be a key, chain or map, so naming one as such is refused."""
        data = self.contents.get(name)
        if data is None:
            from stella_trust.errors import CacheVerificationError

            raise CacheVerificationError(
                f"target {name}: too large to be read as trust material ({self.info[name].length} bytes)"
            )
        return data
