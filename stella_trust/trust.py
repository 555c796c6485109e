"""The view consumers use: freshness, service map, keys, certificates — pure functions.

Nothing here reads the disk or the clock: callers pass verified bytes and `now`, so
each decision (is this trust fresh? which Rekor URL applies in `staging`?) can be
tested directly and is made the same way by the CLI, the agent and the library API.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stella_trust.errors import ServiceMapError, UnknownTargetError

FRESH, GRACE, STALE = "fresh", "grace", "stale"
SERVICE_MAP_REQUIRED = {
    "rekor": ("url", "public_key_target"),
    "fulcio": ("url", "root_cert_target"),
}


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


# ---- durations ---------------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90m`, `36h`, `7d`, `2w` (or plain seconds) -> timedelta."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 90m, 36h or 7d") from None
    if amount < 0:
        raise ValueError(f"{text!r}: a duration cannot be negative")
    return timedelta(seconds=amount * _UNITS[unit])


# ---- names -------------------------------------------------------------------------
def match_name(name: str, names: list[str]) -> str:
    """Exact match, else the single target named `<name>.<ext>`; otherwise a clear error."""
    if name in names:
        return name
    candidates = sorted(n for n in names if n.startswith(name + "."))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise UnknownTargetError(
            f"Unknown target {name!r}: ambiguous, matches {' and '.join(map(repr, candidates))}",
            hint="use the full target name",
        )
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    detail = f"; close names: {', '.join(close)}" if close else ""
    raise UnknownTargetError(f"Unknown target {name!r} in the repository{detail}")


# ---- freshness ---------------------------------------------------------------------
@dataclass(frozen=True)
class Freshness:
    state: str
    expires: datetime  # E: the earliest signed expiry
    stale_after: datetime  # E + freshness threshold
    earliest_role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "expires": iso(self.expires),
            "stale_after": iso(self.stale_after),
            "earliest_role": self.earliest_role,
        }


def compute_freshness(expiries: dict[str, datetime], threshold: timedelta, now: datetime) -> Freshness:
    """DESIGN decision 3: fresh before E, grace until E + threshold, stale after."""
    role = min(expiries, key=lambda r: expiries[r])
    earliest = expiries[role]
    stale_after = earliest + threshold
    if now < earliest:
        state = FRESH
    elif now < stale_after:
        state = GRACE
    else:
        state = STALE
    return Freshness(state, earliest, stale_after, role)


# ---- service map -------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceMap:
    source: str  # target name, or "file:<path>" for a local override
    document: dict[str, Any]

    def section(self, service: str) -> dict[str, Any]:
        value = self.document.get(service)
        return dict(value) if isinstance(value, dict) else {}

    def resolved(self, environment: str | None) -> dict[str, dict[str, Any]]:
        """Each service's fields after the environment's overrides (`rekor_url` -> rekor.url)."""
        services = {name: self.section(name) for name in SERVICE_MAP_REQUIRED}
        for name, value in self.document.items():
            if isinstance(value, dict) and name not in ("overrides", *SERVICE_MAP_REQUIRED):
                services[name] = dict(value)
        if environment is None:
            return services
        overrides = self.document.get("overrides") or {}
        if not isinstance(overrides, dict) or environment not in overrides:
            known = ", ".join(sorted(overrides)) if isinstance(overrides, dict) else ""
            raise ServiceMapError(
                f"Service map {self.source}: environment {environment!r} has no overrides"
                + (f" (known: {known})" if known else ""),
                hint="set `environment` to one the service map defines, or remove it",
            )
        for key, value in (overrides[environment] or {}).items():
            service, _, fieldname = key.partition("_")
            if service in services and fieldname:
                services[service][fieldname] = value
            else:
                services.setdefault("extra_overrides", {})[key] = value
        return services

    def referenced_targets(self, environment: str | None) -> list[str]:
        """Targets the map points at, in the base map and after the environment's overrides."""
        names: dict[str, None] = {}
        for view in (self.resolved(None), self.resolved(environment)):
            for service in view.values():
                for key, value in service.items():
                    if key.endswith("_target") and isinstance(value, str):
                        names[value] = None
        return list(names)


def parse_service_map(data: bytes, source: str) -> ServiceMap:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceMapError(f"Service map {source}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ServiceMapError(f"Service map {source}: must be a JSON object")
    if "version" not in document:
        raise ServiceMapError(f"Service map {source}: missing required field 'version'")
    for service, fields in SERVICE_MAP_REQUIRED.items():
        section = document.get(service)
        if not isinstance(section, dict):
            raise ServiceMapError(f"Service map {source}: missing required field {service!r}")
        for name in fields:
            if not isinstance(section.get(name), str) or not section[name]:
                raise ServiceMapError(f"Service map {source}: missing required field '{service}.{name}'")
    return ServiceMap(source, document)


# ---- keys and certificates ---------------------------------------------------------
@dataclass(frozen=True)
class KeyFact:
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


@dataclass(frozen=True)
class CertFact:
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


def public_key_facts(target: str, data: bytes) -> KeyFact | None:
    """Facts for a PEM public key target; None if the bytes are not one."""
    if b"-----BEGIN PUBLIC KEY-----" not in data:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        return None
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
        algorithm = f"ecdsa-{curves.get(key.curve.name, key.curve.name)}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    elif isinstance(key, ed448.Ed448PublicKey):
        algorithm = "ed448"
    elif isinstance(key, rsa.RSAPublicKey):
        algorithm = f"rsa-{key.key_size}"
    else:
        algorithm = type(key).__name__
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return KeyFact(target, algorithm, hashlib.sha256(spki).hexdigest(), pem)


def certificate_facts(target: str, data: bytes) -> list[CertFact]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return []
    facts = []
    for position, cert in enumerate(certs):
        try:
            is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            is_ca = False
        facts.append(
            CertFact(
                target=target,
                position=position,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                sha256=cert.fingerprint(hashes.SHA256()).hex(),
                is_ca=is_ca,
            )
        )
    return facts


# ---- the whole view ----------------------------------------------------------------
@dataclass(frozen=True)
class RoleInfo:
    version: int
    expires: datetime


@dataclass(frozen=True)
class TargetEntry:
    name: str
    length: int
    sha256: str
    custom: dict[str, Any] | None
    pinned: bool
    role: str  # why the host holds it: service-map / referenced / pinned


@dataclass
class TrustView:
    """What an attestor needs, computed from verified bytes only."""

    tuf_url: str | None
    environment: str | None
    offline_mode: bool
    freshness: Freshness
    roles: dict[str, RoleInfo]
    targets: list[TargetEntry]
    keys: list[KeyFact]
    certificates: list[CertFact]
    service_map: ServiceMap
    endpoints: dict[str, dict[str, Any]]
    last_sync: str | None = None
    last_error: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.freshness.state != STALE

    @property
    def rekor_log_id(self) -> str:
        return str(self.endpoints["rekor"]["log_id"])

    def key(self, target: str) -> KeyFact:
        for fact in self.keys:
            if fact.target == target or fact.target.startswith(target + "."):
                return fact
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
            "last_sync": self.last_sync,
            "last_error": self.last_error,
            "source": self.source,
            "service_map": {"source": self.service_map.source},
            "targets": [
                {
                    "name": t.name,
                    "length": t.length,
                    "sha256": t.sha256,
                    "custom": t.custom,
                    "pinned": t.pinned,
                    "role": t.role,
                }
                for t in self.targets
            ],
            "keys": [k.to_json() for k in self.keys],
            "certificates": [c.to_json() for c in self.certificates],
            "endpoints": self.endpoints,
        }


def resolve_endpoints(
    service_map: ServiceMap,
    environment: str | None,
    keys: dict[str, KeyFact],
    resolve: Any,
) -> dict[str, dict[str, Any]]:
    """Endpoints after overrides, with target references resolved and the log ID checked.

    `resolve(name) -> str` maps a (possibly stem) target name to its full name. Rekor's
    log ID *is* the SHA-256 of its key's SPKI, so a map whose `log_id` disagrees with the
    key it names is refused rather than silently served (a wrong answer beats no answer
    only for attackers).
    """
    services = service_map.resolved(environment)
    rekor = services["rekor"]
    key_target = resolve(rekor["public_key_target"])
    fact = keys.get(key_target)
    if fact is None:
        raise ServiceMapError(
            f"Service map {service_map.source}: rekor.public_key_target {key_target!r} "
            "is not a PEM public key"
        )
    declared = rekor.get("log_id")
    if declared and str(declared).lower() != fact.spki_sha256:
        raise ServiceMapError(
            f"Service map {service_map.source}: rekor.log_id {declared} does not match the "
            f"SHA-256 of {key_target} ({fact.spki_sha256})",
            hint="the repository published an inconsistent service map; report it",
        )
    rekor["public_key_target"] = key_target
    rekor["log_id"] = fact.spki_sha256
    services["fulcio"]["root_cert_target"] = resolve(services["fulcio"]["root_cert_target"])
    return services
