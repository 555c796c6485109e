"""Public typed facts about a Sigstore instance's trust: logs, CAs, timestamp authorities,
services (part of the TrustView).

These frozen dataclasses are what the trust view and the CLI show; they are plain data
(stdlib only, no sigstore or cryptography import) so that `trust status` can render them
without paying for the verifier's imports (equality, hashing and repr from `Record`, as in
view.py). Parsing lives in `_internal/sigstore/trusted_root.py`.

Validity is judged against a caller-supplied `now` (docs/design.md: time is a parameter), and
retired entries are kept and labelled rather than dropped: an expired Rekor or Fulcio key
still verifies bundles signed while it was valid, so operators need to see it.
"""

from datetime import datetime
from typing import Any, Literal

from stella_trust._internal.records import Record, record
from stella_trust._internal.timefmt import iso

Status = Literal["active", "retired", "not-yet-valid"]
LogKind = Literal["rekor", "ctlog"]
ServiceKind = Literal["ca", "oidc", "tlog", "tsa"]


def validity_status(valid_from: datetime | None, valid_until: datetime | None, now: datetime) -> Status:
    """Status of a validity window at `now`; the end is inclusive, as sigstore-python judges it."""
    if valid_from is not None and now < valid_from:
        return "not-yet-valid"
    if valid_until is not None and now > valid_until:
        return "retired"
    return "active"


@record(kw_only=True)
class _Windowed(Record):
    """Shared validity-window behaviour (subclasses add their own fields)."""

    valid_from: datetime | None
    valid_until: datetime | None

    def status(self, now: datetime) -> Status:
        """The entry's status at `now` (a parameter: the view judges it at its own `at`)."""
        return validity_status(self.valid_from, self.valid_until, now)

    def active(self, now: datetime) -> bool:
        """Whether it is valid at `now`; retired entries still verify what was signed in their
        window."""
        return self.status(now) == "active"


@record(kw_only=True)
class TransparencyLog(_Windowed):
    """A Rekor log or a CT log named by the trusted root.

    `rekor_version` is 1 or 2 for Rekor logs (None for CT logs). `rekor_version_source`
    says how it was decided: "signing-config" when the signing config lists the log's URL
    with a majorApiVersion, "inferred" otherwise (Ed25519 checkpoint keys -> 2, else 1),
    because trusted_root.json itself does not record the API version.
    """

    kind: LogKind
    base_url: str
    log_id: str
    key_algorithm: str
    spki_sha256: str
    public_key_pem: str
    rekor_version: int | None = None
    rekor_version_source: Literal["signing-config", "inferred"] | None = None
    operator: str | None = None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready dict with `status` at `now`, so a retired log stays visible."""
        return {
            "kind": self.kind,
            "base_url": self.base_url,
            "log_id": self.log_id,
            "key_algorithm": self.key_algorithm,
            "spki_sha256": self.spki_sha256,
            "public_key_pem": self.public_key_pem,
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "status": self.status(now),
            "rekor_version": self.rekor_version,
            "rekor_version_source": self.rekor_version_source,
            "operator": self.operator,
        }


@record(kw_only=True)
class CertificateChainFacts(_Windowed):
    """A certificate chain as the trusted root lists it: leaf-most first, root last.

    `subjects`, `chain_pems` and `fingerprints` (SHA-256 of each DER certificate, hex) are
    parallel tuples in file order. `valid_from`/`valid_until` are the trusted root's
    `validFor` window (the authority's service period), not the certificates' own.
    """

    uri: str | None
    subjects: tuple[str, ...]
    chain_pems: tuple[str, ...]
    fingerprints: tuple[str, ...]
    operator: str | None = None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready dict with `status` at `now`, so a retired authority stays visible."""
        return {
            "uri": self.uri,
            "subjects": list(self.subjects),
            "fingerprints": list(self.fingerprints),
            "chain_pems": list(self.chain_pems),
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "status": self.status(now),
            "operator": self.operator,
        }


@record(kw_only=True)
class CertificateAuthority(CertificateChainFacts):
    """A Fulcio CA: its chain issues the short-lived signing certificates."""


@record(kw_only=True)
class TimestampAuthority(CertificateChainFacts):
    """An RFC 3161 timestamp authority: its chain signs timestamps that establish signing time."""


@record(kw_only=True)
class ServiceUrl(_Windowed):
    """A service endpoint from the signing config (where clients sign, not what they trust)."""

    kind: ServiceKind
    url: str
    major_api_version: int
    operator: str | None = None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready dict with `status` at `now`, so a service past its window stays visible."""
        return {
            "kind": self.kind,
            "url": self.url,
            "major_api_version": self.major_api_version,
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "status": self.status(now),
            "operator": self.operator,
        }


@record(kw_only=True)
class SigningConfigFacts(Record):
    """The services a signing config lists, and which format it was (v0.2 or the older v0.1)."""

    media_type: str
    services: tuple[ServiceUrl, ...]


@record(kw_only=True)
class SigstoreTrust(Record):
    """Everything one trusted_root.json (plus optional signing config) says, as typed facts."""

    transparency_logs: tuple[TransparencyLog, ...]
    certificate_authorities: tuple[CertificateAuthority, ...]
    ctlogs: tuple[TransparencyLog, ...]
    timestamp_authorities: tuple[TimestampAuthority, ...]
    services: tuple[ServiceUrl, ...]
    media_type: str
    signing_config_media_type: str | None = None

    def rekor_log(self, log_id: str) -> TransparencyLog | None:
        """The Rekor log with this hex log ID, if the trusted root names it."""
        return next((log for log in self.transparency_logs if log.log_id == log_id.lower()), None)

    def to_json(self, now: datetime) -> dict[str, Any]:
        """JSON-ready dict; every entry carries `status` at `now` so retired ones stay visible."""
        return {
            "media_type": self.media_type,
            "signing_config_media_type": self.signing_config_media_type,
            "now": iso(now),
            "transparency_logs": [log.to_json(now) for log in self.transparency_logs],
            "certificate_authorities": [ca.to_json(now) for ca in self.certificate_authorities],
            "ctlogs": [log.to_json(now) for log in self.ctlogs],
            "timestamp_authorities": [tsa.to_json(now) for tsa in self.timestamp_authorities],
            "services": [service.to_json(now) for service in self.services],
        }
