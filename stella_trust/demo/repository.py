"""Sigstore-shaped demo content: two Rekor keys, a Fulcio chain and a service map.

Used by `trust demo` and by the tests, so both exercise the same realistic targets
(an ECDSA P-256 Rekor key like the public-good instance, an Ed25519 one like Rekor
v2, a two-certificate Fulcio chain) rather than placeholder bytes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stella_trust.repository.metadata import Expiries, Repository, generate_signer
from stella_trust.repository.rotation import rotate_role

SERVICE_MAP = "sigstore-services-v1.json"
REKOR_V1 = "rekor-key-v1.pub"
REKOR_V2 = "rekor-key-v2.pub"
FULCIO_CHAIN = "fulcio-chain.pem"


def _public_pem(private_key: Any) -> bytes:
    """The PEM SubjectPublicKeyInfo of a generated key: the form Sigstore publishes log keys in."""
    from cryptography.hazmat.primitives import serialization

    data: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def spki_sha256(pem: bytes) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo: for a Rekor key this is its log ID (RFC 6962
    section 3.2's log ID, as Rekor uses it), which the service map must name."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def rekor_keys() -> tuple[bytes, bytes]:
    """Fresh public keys shaped like the two Rekor generations: ECDSA P-256 (public-good Rekor v1)
    and Ed25519 (Rekor v2); the private halves are dropped, nothing here signs entries."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    return (
        _public_pem(ec.generate_private_key(ec.SECP256R1())),
        _public_pem(ed25519.Ed25519PrivateKey.generate()),
    )


def fulcio_chain(now: datetime) -> bytes:
    """An intermediate followed by its self-signed root, as Fulcio publishes them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        """A demo certificate name, marked as the demo's own organisation."""
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stella-trust demo"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    def ca_cert(
        subject: x509.Name, issuer: x509.Name, key: Any, signer: Any, days: int, path_length: int | None
    ) -> x509.Certificate:
        """A CA certificate valid from yesterday for `days` days, for signing certificates and CRLs only."""
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(signer, hashes.SHA384())
        )

    root_key = ec.generate_private_key(ec.SECP384R1())
    intermediate_key = ec.generate_private_key(ec.SECP384R1())
    root_name, intermediate_name = name("demo-fulcio-root"), name("demo-fulcio-intermediate")
    root = ca_cert(root_name, root_name, root_key, root_key, 3650, 1)
    intermediate = ca_cert(intermediate_name, root_name, intermediate_key, root_key, 1825, 0)
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (intermediate, root))


def service_map(rekor_key_pem: bytes, key_target: str = "rekor-key-v1") -> bytes:
    """A StellaOps service map naming `key_target` as the Rekor key, with the log ID it must have,
    plus a staging override (docs/design.md, Service map)."""
    document = {
        "version": 1,
        "rekor": {
            "url": "https://rekor.sigstore.example",
            "log_id": spki_sha256(rekor_key_pem),
            "public_key_target": key_target,
        },
        "fulcio": {"url": "https://fulcio.sigstore.example", "root_cert_target": FULCIO_CHAIN},
        "overrides": {
            "staging": {
                "rekor_url": "https://rekor.sigstage.example",
                "fulcio_url": "https://fulcio.sigstage.example",
            }
        },
    }
    return json.dumps(document, indent=2).encode() + b"\n"


class DemoRepository:
    """A Repository pre-filled with Sigstore-shaped targets, plus the rotations tests need."""

    def __init__(
        self,
        path: Path,
        *,
        now: datetime | None = None,
        expiries: Expiries | None = None,
        consistent_snapshot: bool = True,
    ) -> None:
        """A fresh repository (root threshold 2 of 3) with both Rekor keys, the Fulcio chain and the
        service map, published at `now`; the Sigstore usage labels match Sigstore's own repository."""
        now = now or datetime.now(UTC)
        self.repo = Repository.create(
            Path(path),
            root_keys=3,
            root_threshold=2,
            expiries=expiries,
            consistent_snapshot=consistent_snapshot,
            now=now,
        )
        self.rekor_v1, self.rekor_v2 = rekor_keys()
        self.repo.add_target(REKOR_V1, self.rekor_v1, custom={"sigstore": {"usage": "Rekor"}})
        self.repo.add_target(REKOR_V2, self.rekor_v2, custom={"sigstore": {"usage": "Rekor"}})
        self.repo.add_target(FULCIO_CHAIN, fulcio_chain(now), custom={"sigstore": {"usage": "Fulcio"}})
        self.repo.add_target(SERVICE_MAP, service_map(self.rekor_v1))
        self.repo.publish(now)

    def switch_to_rekor_v2(self, now: datetime | None = None) -> None:
        """The key rotation consumers care about: the service map now names rekor-key-v2."""
        self.repo.add_target(SERVICE_MAP, service_map(self.rekor_v2, "rekor-key-v2"))
        self.repo.publish(now)

    def rotate(self, role: str, now: datetime | None = None) -> None:
        """`trust repo rotate ROLE` on this in-memory repository: the operators' rotation code
        with generated keys in place of the workspace's key files, then published."""
        count = len(self.repo.root.signed.roles[role].keyids)
        new = [generate_signer(self.repo.key_type) for _ in range(count)]
        rotate_role(self.repo, role, list(new), self.repo.signers["root"], now or datetime.now(UTC))
        self.repo.write()

    @property
    def root_path(self) -> Path:
        """The first root: what a client is given out of band as its anchor (decision 1)."""
        return self.repo.metadata_dir / "1.root.json"
