"""Facts consumers need about key and certificate targets (docs/design.md, Key facts)."""

from __future__ import annotations

import hashlib

from stella_trust.view import CertFact, KeyFact


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
    """One fact per certificate of a PEM chain target, in file order ([] if not one)."""
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
