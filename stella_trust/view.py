"""The public, typed view of verified trust: what `open_trust()` returns.

Every value here was computed from bytes that re-verified from the trust anchor
(docs/design.md, decision 2); the types are frozen so a consumer cannot mistake a
local edit for trust. `to_json()` is the one JSON shape `trust status --json` prints.
Equality, hashing and repr come from `Record`, written once rather than compiled per class at
every start-up; they answer what dataclass's own would (_internal/records.py).
"""

from collections.abc import Mapping
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Any

from stella_trust._internal.records import Record, record
from stella_trust._internal.timefmt import iso
from stella_trust.errors import UnknownTargetError
from stella_trust.sigstore_types import SigstoreTrust


class FreshnessState(StrEnum):
    """Decision 3: fresh before E, grace until E + threshold, stale after."""

    FRESH = "fresh"
    GRACE = "grace"
    STALE = "stale"


@record
class Freshness(Record):
    state: FreshnessState
    expires: datetime  # E: the earliest signed expiry
    stale_after: datetime  # E + freshness threshold
    earliest_role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "expires": iso(self.expires),
            "stale_after": iso(self.stale_after),
            "earliest_role": self.earliest_role,
        }


@record
class KeyFact(Record):
    """A public key target: for Rekor, `spki_sha256` is the log ID."""

    target: str
    algorithm: str
    spki_sha256: str
    pem: str

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "algorithm": self.algorithm,
            "spki_sha256": self.spki_sha256,
            "pem": self.pem,
        }


@record
class CertFact(Record):
    """One certificate of a chain target, in file order."""

    target: str
    position: int  # order in the chain file: 0 is the first PEM block
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha256: str
    is_ca: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "position": self.position,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "sha256": self.sha256,
            "is_ca": self.is_ca,
        }


@record
class RoleInfo(Record):
    version: int
    expires: datetime


@record
class TargetEntry(Record):
    name: str
    length: int
    sha256: str
    custom: dict[str, Any] | None
    pinned: bool
    # why the host holds it: service-map / referenced / trusted-root / signing-config / pinned,
    # or legacy-rekor / legacy-fulcio / legacy-ctfe / legacy-tsa (a legacy Sigstore target)
    role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "length": self.length,
            "sha256": self.sha256,
            "custom": self.custom,
            "pinned": self.pinned,
            "role": self.role,
        }


@record
class ServiceMap(Record):
    """The service map document as signed (or as the operator's local file)."""

    source: str  # target name, or "file:<path>" for a local override
    document: dict[str, Any]


@record
class RekorEndpoint(Record):
    url: str
    log_id: str
    public_key_target: str


@record
class FulcioEndpoint(Record):
    url: str
    root_cert_target: str


@record
class Endpoints(Record):
    """Service endpoints after the environment's overrides, target names resolved.

    `rekor` and `fulcio` are typed; `services` holds every service's fields (unknown
    ones kept, for forward compatibility). `endpoints["rekor"]["url"]` still works.
    """

    rekor: RekorEndpoint
    fulcio: FulcioEndpoint
    services: Mapping[str, Mapping[str, Any]]

    def __getitem__(self, service: str) -> Mapping[str, Any]:
        return self.services[service]

    def to_json(self) -> dict[str, Any]:
        return {name: dict(fields) for name, fields in self.services.items()}


@record
class TrustView(Record):
    """What an attestor needs, computed from verified bytes only.

    `sources` says what the repository publishes ("service-map", "sigstore" or both, or
    "legacy": Sigstore's keys and chains as separate marked targets); `sigstore` (logs, CAs,
    CT logs, TSAs, services) and `trusted_root_json` exist for each: a service map's Rekor key
    and Fulcio chain, or the legacy targets, are turned into a trusted root.
    `service_map` is None for a Sigstore-only repository; `endpoints` is always there.
    """

    tuf_url: str | None
    environment: str | None
    offline_mode: bool
    at: datetime  # the `now` the view was judged at (freshness, log and CA status)
    freshness: Freshness
    roles: Mapping[str, RoleInfo]
    targets: tuple[TargetEntry, ...]
    keys: tuple[KeyFact, ...]
    certificates: tuple[CertFact, ...]
    sources: tuple[str, ...]
    service_map: ServiceMap | None
    endpoints: Endpoints
    sigstore: SigstoreTrust
    trusted_root_json: bytes = field(repr=False)
    signing_config_json: bytes | None = field(default=None, repr=False)
    missing_pins: tuple[str, ...] = ()  # pinned but not in the cache (see retired_pins)
    retired_pins: tuple[str, ...] = ()  # of those, the ones the repository stopped listing
    last_sync: datetime | None = None  # the last successful sync or import, like `at`
    last_error: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    instance: str = "default"  # the config's instance this trust belongs to (decision 23)

    @property
    def usable(self) -> bool:
        return self.freshness.state != FreshnessState.STALE

    @property
    def rekor_log_id(self) -> str:
        return self.endpoints.rekor.log_id

    def key(self, target: str) -> KeyFact:
        """The key target named exactly, else the single `<target>.<ext>` (never a guess)."""
        for fact in self.keys:
            if fact.target == target:
                return fact
        stems = [fact for fact in self.keys if fact.target.startswith(target + ".")]
        if len(stems) == 1:
            return stems[0]
        if stems:
            names = " and ".join(repr(f.target) for f in stems)
            raise UnknownTargetError(f"Unknown target {target!r}: ambiguous, matches {names}")
        raise UnknownTargetError(f"Unknown target {target!r}: no public key by that name")

    def to_json(self) -> dict[str, Any]:
        return {
            "tuf_url": self.tuf_url,
            "environment": self.environment,
            "offline_mode": self.offline_mode,
            "freshness": self.freshness.to_json(),
            "metadata": {
                role: {"version": info.version, "expires": iso(info.expires)}
                for role, info in self.roles.items()
            },
            "last_sync": iso(self.last_sync),
            "last_error": self.last_error,
            "source": dict(self.source),
            "sources": list(self.sources),
            "pins": {"missing": list(self.missing_pins), "retired": list(self.retired_pins)},
            "service_map": {"source": self.service_map.source} if self.service_map else None,
            "targets": [t.to_json() for t in self.targets],
            "keys": [k.to_json() for k in self.keys],
            "certificates": [c.to_json() for c in self.certificates],
            "endpoints": self.endpoints.to_json(),
            "sigstore": self.sigstore.to_json(self.at),
        }
