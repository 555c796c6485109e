"""A trusted_root.json synthesised from Sigstore's legacy TUF targets (`rekor.pub`,
`fulcio_v1.crt.pem`, `ctfe.pub`, `tsa_*.crt.pem`: docs/design.md, decision 21).

Before `trusted_root.json` existed, a Sigstore TUF repository published each key or
certificate as its own target, marked with custom metadata `{"sigstore": {"usage", "status"}}`
(cosign's `pkg/cosign/tuf`). Private instances (sigstore/scaffolding, RHTAS) still do. This
module turns those bytes into the trusted root every verifier reads, so `status`, `export`
and `verify` treat the instance like any other; the windows come from the caller (the policy
decides them), the chains and log IDs from the bytes:

- log IDs: SHA-256 of the key's DER SubjectPublicKeyInfo (Rekor v1, RFC 6962 §3.2); an
  Ed25519 Rekor key is a Rekor v2 (tile) log whose ID is its signed-note key hash under the
  log's origin (C2SP signed-note, "Ed25519 signatures"), taken from the target's `uri`;
- certificate chains: the certificates of all targets of one usage are linked issuer to
  subject (cryptography's `verify_directly_issued_by`), one authority per path from a
  leaf-most certificate to its top, leaf-most first as the trusted root orders them.

The result is checked by loading it with sigstore-python's own `TrustedRoot` (tests load
every exported one the same way).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stella_trust._internal.sigstore.errors import TrustMaterialError
from stella_trust._internal.sigstore.exports import _public_key_entry, _rfc3339
from stella_trust._internal.sigstore.trusted_root import TRUSTED_ROOT_MEDIA_TYPE, load_trusted_root

SYNTHESISED = "trusted_root.json (synthesised from legacy targets)"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LegacyMaterial:
    """One legacy target's bytes, the service URL its custom metadata names (may be empty),
    and the end of its validity window (None: open, an Active target)."""

    target: str
    data: bytes
    url: str
    valid_until: datetime | None


@dataclass(frozen=True)
class Chain:
    """One authority found among the certificates of a usage: leaf-most first."""

    certificates: tuple[Any, ...]  # cryptography x509.Certificate
    targets: tuple[frozenset[str], ...]  # per certificate, the targets that publish it


def synthesize_legacy_root(
    rekor: Sequence[LegacyMaterial],
    fulcio: Sequence[LegacyMaterial],
    ctfe: Sequence[LegacyMaterial],
    tsa: Sequence[LegacyMaterial],
    *,
    check: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """The trusted_root.json for these legacy targets, and which target each log ID came from.

    A log key's window starts at the earliest notBefore among the published certificates
    (a log entry cannot vouch for a certificate older than any CA; the epoch when there is
    none); a chain's starts at its own earliest notBefore. An end is the earliest end among
    the targets the entry was built from (an authority whose certificates are all Active
    stays open). `check=False` skips loading it with sigstore-python, for the view builder, which
    parses it with the same models right after and must not import the verifier on `status`."""
    fulcio_chains = _chains(fulcio, "Fulcio")
    tsa_chains = _chains(tsa, "TSA")
    every_cert = [cert for chain in (*fulcio_chains, *tsa_chains) for cert in chain.certificates]
    start = min((cert.not_valid_before_utc for cert in every_cert), default=EPOCH)
    log_targets: dict[str, str] = {}

    def log(material: LegacyMaterial, rekor_log: bool) -> dict[str, Any]:
        try:
            entry, der = _public_key_entry(material.data.decode("ascii", errors="replace"), start)
        except ValueError as exc:
            raise TrustMaterialError(material.target, f"not a usable public key ({exc})") from None
        _close(entry, start, material.valid_until)
        log_id = _log_id(der, material.url) if rekor_log else _spki_id(der)
        log_targets[log_id.hex()] = material.target
        return {
            "baseUrl": material.url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": entry,
            "logId": {"keyId": base64.b64encode(log_id).decode()},
        }

    by_name = {m.target: m for m in (*fulcio, *tsa)}
    document = {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [log(m, True) for m in rekor],
        "certificateAuthorities": [_authority(chain, by_name) for chain in fulcio_chains],
        "ctlogs": [log(m, False) for m in ctfe],
        "timestampAuthorities": [_authority(chain, by_name) for chain in tsa_chains],
    }
    data = json.dumps(document, indent=2).encode()
    if check:
        load_trusted_root(data, target=SYNTHESISED)
    return data, log_targets


def _close(entry: dict[str, Any], start: datetime, end: datetime | None) -> None:
    """Give a window its end; an end before the start leaves an empty window (start = end),
    which refuses everything rather than being silently widened."""
    if end is not None:
        entry["validFor"]["end"] = _rfc3339(max(end, start))


def _spki_id(der: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(der).digest()


def _log_id(der: bytes, url: str) -> bytes:
    """Rekor v1: SHA-256 of the SPKI. Rekor v2 (Ed25519 checkpoint key): the signed-note key
    hash under the log's origin, the URL without its scheme (how Rekor v2 names itself)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from stella_trust._internal.sigstore.signednote import ed25519_key_hash

    key = load_der_public_key(der)
    parts = urlsplit(url)
    origin = (parts.netloc + parts.path).rstrip("/")
    if isinstance(key, Ed25519PublicKey) and origin:
        return ed25519_key_hash(origin, key)
    return _spki_id(der)


def _chains(materials: Sequence[LegacyMaterial], usage: str) -> list[Chain]:
    """Every path from a leaf-most certificate up to its top (a self-signed root, or the
    highest certificate whose issuer is not published), over all targets of one usage. A
    target may hold one certificate or a whole chain; duplicates count once."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import load_pem_x509_certificates

    certs: dict[bytes, Any] = {}
    sources: dict[bytes, set[str]] = {}
    for material in materials:
        try:
            found = load_pem_x509_certificates(material.data)
        except ValueError as exc:
            raise TrustMaterialError(
                material.target, f"{usage} target is not PEM certificates ({exc})"
            ) from None
        for cert in found:
            der = cert.public_bytes(Encoding.DER)
            certs.setdefault(der, cert)
            sources.setdefault(der, set()).add(material.target)

    def issued(child: Any, parent: Any) -> bool:
        if child is parent or child.issuer != parent.subject:
            return False
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    parents = {
        der: [p for p_der, p in certs.items() if p_der != der and issued(cert, p)]
        for der, cert in certs.items()
    }
    has_child = {p_der for der in certs for p_der, p in certs.items() if p in parents[der]}
    chains: list[Chain] = []

    def climb(path: list[bytes]) -> None:
        above = [der for der, cert in certs.items() if cert in parents[path[-1]] and der not in path]
        if not above:
            chains.append(Chain(tuple(certs[d] for d in path), tuple(frozenset(sources[d]) for d in path)))
        for der in above:
            climb([*path, der])

    for der in certs:
        if der not in has_child:  # leaf-most: nothing published was issued by it
            climb([der])
    return chains


def _end_of(published: frozenset[str], by_name: dict[str, LegacyMaterial]) -> datetime | None:
    """A certificate's end: open while any target publishing it is Active, else the latest end
    among them (the last moment a signed word still vouched for it)."""
    ends = [by_name[name].valid_until for name in published]
    if any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)


def _authority(chain: Chain, by_name: dict[str, LegacyMaterial]) -> dict[str, Any]:
    """A CertificateAuthority message: the chain, the URL its targets name, its window."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    materials = [by_name[name] for name in sorted(set().union(*chain.targets))]
    leaf = chain.certificates[0].subject
    org = leaf.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    common = leaf.get_attributes_for_oid(NameOID.COMMON_NAME)
    start = min(cert.not_valid_before_utc for cert in chain.certificates)
    ends = [end for published in chain.targets if (end := _end_of(published, by_name)) is not None]
    window: dict[str, Any] = {"start": _rfc3339(start)}
    if ends:
        window["end"] = _rfc3339(max(min(ends), start))
    return {
        "subject": {
            "organization": str(org[0].value) if org else "",
            "commonName": str(common[0].value) if common else "",
        },
        "uri": next((m.url for m in materials if m.url), ""),
        "certChain": {
            "certificates": [
                {"rawBytes": base64.b64encode(cert.public_bytes(Encoding.DER)).decode()}
                for cert in chain.certificates
            ]
        },
        "validFor": window,
    }
