"""Which Sigstore instance a bundle came from, for a refusal's words only.

A bundle signed on another Sigstore instance (staging against public-good trust, a private
instance) fails verification on whatever check sigstore-python meets first, often a chain or
timestamp error that says nothing of the cause. When verification has already failed, the
bundle's transparency-log IDs are compared with the logs the trust holds: if none is held,
the refusal says so. This never decides anything: the IDs are unsigned bundle fields, read
only to explain a verification that was refused anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


def foreign_log_ids(bundle: bytes, trusted_log_ids: Iterable[str]) -> list[str]:
    """The bundle's log IDs (hex) when none of them is among `trusted_log_ids`; else []."""
    from sigstore_models.bundle.v1 import Bundle

    try:
        model = Bundle.from_json(bundle)
        named = [entry.log_id.key_id.hex() for entry in model.verification_material.tlog_entries or []]
    except Exception:  # a bundle that does not parse: its own error has been reported already
        return []
    trusted = {log_id.lower() for log_id in trusted_log_ids}
    return named if named and not trusted.intersection(named) else []


class BundleOrigin(NamedTuple):
    """Where a bundle says it was signed: the hex IDs of the logs its entries name, and the
    issuer (DER name) of its signing certificate (None for a managed key). Unsigned fields,
    read only to choose which instance's trust verifies it: the verification that follows
    decides, with that trust alone."""

    log_ids: tuple[str, ...]
    certificate_issuer: bytes | None


def bundle_origin(bundle: bytes) -> BundleOrigin | None:
    """The bundle's origin, or None when it does not parse (its verification will say why)."""
    from cryptography import x509
    from sigstore_models.bundle.v1 import Bundle

    try:
        material = Bundle.from_json(bundle).verification_material
        log_ids = tuple(entry.log_id.key_id.hex().lower() for entry in material.tlog_entries or [])
        issuer = None
        certificate = material.certificate or (
            material.x509_certificate_chain.certificates[0] if material.x509_certificate_chain else None
        )
        if certificate is not None:
            issuer = x509.load_der_x509_certificate(certificate.raw_bytes).issuer.public_bytes()
    except Exception:  # an unparseable bundle: refused by the verification with its own words
        return None
    return BundleOrigin(log_ids, issuer)


def holds(origin: BundleOrigin, log_ids: Iterable[str], ca_chain_pems: Iterable[Iterable[str]]) -> bool:
    """Whether a trust holds what the bundle names: one of its log IDs when it names logs (the
    log's key is what verifies the entry), else the CA that issued its certificate (the
    issuer's name is the subject of a chain's leaf-most certificate)."""
    if origin.log_ids:
        return bool({log_id.lower() for log_id in log_ids}.intersection(origin.log_ids))
    if origin.certificate_issuer is None:
        return False
    from cryptography import x509

    for chain in ca_chain_pems:
        first = next(iter(chain), None)
        if first is None:
            continue
        subject = x509.load_pem_x509_certificate(first.encode()).subject.public_bytes()
        if subject == origin.certificate_issuer:
            return True
    return False
