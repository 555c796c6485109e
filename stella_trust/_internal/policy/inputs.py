"""What the pure policy layer is given: small frozen values, never settings, a store or files.

This is python-tuf's split (its `TrustedMetadataSet` takes bytes, its `Updater` does the
I/O): `reader`, `sync` and the bundle importer read the config, the cache and the operator's
local service map, and hand `policy/` these values; `policy/` decides from them and `now`.

They are `Value`s, not frozen dataclasses nor NamedTuples: the same immutability and equality,
while Python 3.11 builds a frozen dataclass with six exec() calls (~0.8 ms each class) and a
NamedTuple with one exec() and a type check of every field (~0.2 ms each class) on every start-up
of `trust status` (issue 24). The public types (view.py, sigstore_types.py) stay dataclasses.
"""

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from tuf.api.metadata import TargetFile

SERVICE_MAP, SIGSTORE = "service-map", "sigstore"  # the trust source kinds (TrustView.sources)
LEGACY = "legacy"  # Sigstore's separate key/chain targets with custom metadata (policy/legacy.py)
DEFAULT_REKOR_KEY_TARGETS = ("rekor-key-v1",)
_NOTHING: Mapping[str, Any] = MappingProxyType({})  # a shared default no one can fill


class Value:
    """A frozen value over its `__slots__`: `==` and `hash()` over the fields in order (values of
    the same class only), `repr()`, and no assignment or deletion after `__init__`, which sets the
    fields through `_set`: what a NamedTuple gave these values, without its cost at start-up."""

    __slots__ = ()

    def _set(self, **fields: Any) -> None:
        """Set the fields (from `__init__` only)."""
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        """The fields' values, in `__slots__` order."""
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        """Same class and equal fields."""
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Value)
        return self._values() == other._values()

    def __hash__(self) -> int:
        """Of the fields' values (unhashable if one of them is)."""
        return hash(self._values())

    def __repr__(self) -> str:
        """`Name(field=value, ...)`."""
        names: tuple[str, ...] = self.__slots__
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        """Refused: a value is frozen."""
        raise AttributeError(f"{type(self).__qualname__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        """Refused: a value is frozen."""
        raise AttributeError(f"{type(self).__qualname__} is frozen: cannot delete {name!r}")


class TrustPolicy(Value):
    """The settings fields a trust decision reads (docs/design.md, Trust sources, Names)."""

    __slots__ = (
        "environment",
        "freshness_threshold",
        "local_service_map",
        "offline_mode",
        "pinned_targets",
        "rekor_key_targets",
        "service_map_target",
        "sigstore_signing_config_targets",
        "sigstore_trusted_root_target",
        "trust_source",
        "tuf_url",
    )
    trust_source: str
    service_map_target: str
    # the operator's local service map (service_map_file): its name and bytes, read by the caller
    local_service_map: tuple[str, bytes] | None
    sigstore_trusted_root_target: str
    sigstore_signing_config_targets: tuple[str, ...]
    rekor_key_targets: tuple[str, ...] | None
    pinned_targets: tuple[str, ...]
    environment: str | None
    freshness_threshold: timedelta
    # shown in the view, never decided on
    tuf_url: str | None
    offline_mode: bool

    def __init__(
        self,
        trust_source: str = "auto",
        service_map_target: str = "sigstore-services-v1",
        local_service_map: tuple[str, bytes] | None = None,
        sigstore_trusted_root_target: str = "trusted_root.json",
        sigstore_signing_config_targets: tuple[str, ...] = (
            "signing_config.v0.2.json",
            "signing_config.json",
        ),
        rekor_key_targets: tuple[str, ...] | None = None,
        pinned_targets: tuple[str, ...] = (),
        environment: str | None = None,
        freshness_threshold: timedelta = timedelta(days=7),
        tuf_url: str | None = None,
        offline_mode: bool = False,
    ) -> None:
        """The fields, each defaulting to the settings' own default."""
        self._set(
            trust_source=trust_source,
            service_map_target=service_map_target,
            local_service_map=local_service_map,
            sigstore_trusted_root_target=sigstore_trusted_root_target,
            sigstore_signing_config_targets=sigstore_signing_config_targets,
            rekor_key_targets=rekor_key_targets,
            pinned_targets=pinned_targets,
            environment=environment,
            freshness_threshold=freshness_threshold,
            tuf_url=tuf_url,
            offline_mode=offline_mode,
        )

    def pins(self, sources: tuple[str, ...]) -> list[str]:
        """Every other target the host keeps, in order, without duplicates. The Rekor key
        default names a StellaOps target, so it applies to service-map repositories only."""
        rekor = self.rekor_key_targets
        if rekor is None:
            rekor = DEFAULT_REKOR_KEY_TARGETS if SERVICE_MAP in sources else ()
        return list(dict.fromkeys([*rekor, *self.pinned_targets]))


class Recorded(Value):
    """What the host recorded last (state.json): informational, shown in the view, and the
    pins the repository retired (decision 16)."""

    __slots__ = ("last_error", "last_sync", "legacy_expired", "retired_pins", "source")
    retired_pins: tuple[str, ...]
    last_sync: str | None
    last_error: str | None
    source: Mapping[str, Any]
    # legacy targets (by SHA-256) and when this host first saw each marked Expired (ISO 8601)
    legacy_expired: Mapping[str, str]

    def __init__(
        self,
        retired_pins: tuple[str, ...] = (),
        last_sync: str | None = None,
        last_error: str | None = None,
        source: Mapping[str, Any] = _NOTHING,
        legacy_expired: Mapping[str, str] = _NOTHING,
    ) -> None:
        """Nothing recorded, unless given."""
        self._set(
            retired_pins=retired_pins,
            last_sync=last_sync,
            last_error=last_error,
            source=source,
            legacy_expired=legacy_expired,
        )


class VerifiedTargets(Value):
    """The verified targets a view is built from: their signed info, and the bytes of the
    ones small enough to hold (the keys, chains, maps and trusted roots a view parses)."""

    __slots__ = ("contents", "info")
    info: Mapping[str, TargetFile]
    contents: Mapping[str, bytes]

    def __init__(self, info: Mapping[str, TargetFile], contents: Mapping[str, bytes]) -> None:
        """Every verified target's signed info, and the bytes of those held in memory."""
        self._set(info=info, contents=contents)

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
