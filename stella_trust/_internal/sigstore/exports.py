"""Trust files built for other verifiers: a trusted_root.json synthesised from a StellaOps
service map's Rekor key and Fulcio chain, and the ClientTrustConfig sigstore-python reads.

Both are checked with the same models sigstore-python loads them with before they leave.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stella_trust._internal.sigstore.errors import TrustMaterialError
from stella_trust._internal.sigstore.trusted_root import (
    CLIENT_TRUST_CONFIG_MEDIA_TYPE,
    SIGNING_CONFIG_V02_MEDIA_TYPE,
    TRUSTED_ROOT_MEDIA_TYPE,
    _load_json,
    _validation_problem,
    load_trusted_root,
    parse_trusted_root,
)
from stella_trust._internal.timefmt import iso
from stella_trust.sigstore_types import (
    CertificateAuthority,
    ServiceKind,
    ServiceUrl,
    SigstoreTrust,
    TimestampAuthority,
    TransparencyLog,
)


def _rfc3339(moment: datetime) -> str:
    text = iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    assert text is not None
    return text


def _public_key_entry(pem: str, valid_from: datetime) -> tuple[dict[str, Any], bytes]:
    """A trusted-root PublicKey message for a PEM key, and its DER SPKI."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    key = load_pem_public_key(pem.encode())
    if isinstance(key, ec.EllipticCurvePublicKey):
        details = {
            "secp256r1": "PKIX_ECDSA_P256_SHA_256",
            "secp384r1": "PKIX_ECDSA_P384_SHA_384",
            "secp521r1": "PKIX_ECDSA_P521_SHA_512",
        }.get(key.curve.name)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        details = "PKIX_ED25519"
    elif isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
        details = f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    else:
        details = None
    if details is None:
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    entry = {
        "rawBytes": base64.b64encode(der).decode(),
        "keyDetails": details,
        "validFor": {"start": _rfc3339(valid_from)},
    }
    return entry, der


def synthesize_trusted_root(
    rekor_url: str,
    rekor_key_pem: str,
    fulcio_url: str,
    fulcio_chain_pems: Sequence[str],
    ctlog_keys: Sequence[tuple[str, str]] = (),
    valid_from: datetime | None = None,
    timestamp_authorities: Sequence[tuple[str, Sequence[str]]] = (),
    *,
    check: bool = True,
) -> bytes:
    """A trusted_root.json for a repository that publishes a StellaOps service map instead.

    Log IDs are SHA-256 of each key's DER SPKI (Rekor's and RFC 6962's definition).
    `fulcio_chain_pems` are PEM texts (one may hold several certificates) ordered leaf-most
    first; a root-first chain is reversed. `ctlog_keys` / `timestamp_authorities` are
    `(url, pem)` / `(url, chain pems)`; without CT log keys sigstore-python loads the root
    but cannot verify certificate-signed bundles (no SCT check possible). `valid_from`
    defaults to the earliest notBefore in the Fulcio chain. The result is checked by loading
    it with sigstore-python's TrustedRoot before it is returned (`check=False` skips that
    for callers that parse it with the same models right after, as the view builder does).
    """
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import load_pem_x509_certificates

    try:
        chain = [cert for pem in fulcio_chain_pems for cert in load_pem_x509_certificates(pem.encode())]
        if not chain:
            raise ValueError("the Fulcio chain holds no certificate")
        if len(chain) > 1 and chain[0].subject == chain[0].issuer:
            chain.reverse()  # given root first
        start = valid_from or min(cert.not_valid_before_utc for cert in chain)
        rekor_key, rekor_der = _public_key_entry(rekor_key_pem, start)

        def _ca(url: str, certs: Sequence[Any]) -> dict[str, Any]:
            leaf = certs[0].subject
            org = [a.value for a in leaf.get_attributes_for_oid(_oid("O"))]
            common = [a.value for a in leaf.get_attributes_for_oid(_oid("CN"))]
            return {
                "subject": {
                    "organization": str(org[0]) if org else "",
                    "commonName": str(common[0]) if common else "",
                },
                "uri": url,
                "certChain": {
                    "certificates": [
                        {"rawBytes": base64.b64encode(cert.public_bytes(Encoding.DER)).decode()}
                        for cert in certs
                    ]
                },
                "validFor": {"start": _rfc3339(start)},
            }

        ctlogs = []
        for url, pem in ctlog_keys:
            entry, der = _public_key_entry(pem, start)
            ctlogs.append(
                {
                    "baseUrl": url,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": entry,
                    "logId": {"keyId": base64.b64encode(hashlib.sha256(der).digest()).decode()},
                }
            )
        tsas = [
            _ca(url, [cert for pem in pems for cert in load_pem_x509_certificates(pem.encode())])
            for url, pems in timestamp_authorities
        ]
    except ValueError as exc:
        raise TrustMaterialError("synthesized trusted_root.json", str(exc)) from None
    document = {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [
            {
                "baseUrl": rekor_url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": rekor_key,
                "logId": {"keyId": base64.b64encode(hashlib.sha256(rekor_der).digest()).decode()},
            }
        ],
        "certificateAuthorities": [_ca(fulcio_url, chain)],
        "ctlogs": ctlogs,
        "timestampAuthorities": tsas,
    }
    data = json.dumps(document, indent=2).encode()
    if check:
        load_trusted_root(data, target="synthesized trusted_root.json")
    return data


def _oid(short: str) -> Any:
    from cryptography.x509.oid import NameOID

    return NameOID.ORGANIZATION_NAME if short == "O" else NameOID.COMMON_NAME


def client_trust_config(trusted_root: bytes, signing_config: bytes | None = None) -> bytes:
    """The ClientTrustConfig JSON that `sigstore --trust-config FILE` reads.

    A v0.2 signing config is embedded unchanged; a v0.1 one is converted. Without one, a
    minimal v0.2 config is derived from the trusted root (its Fulcio URIs, Rekor logs with
    their API versions, TSA URIs; no OIDC URL) — enough for `sigstore verify`, which only
    reads the trusted root; signing with it needs a real signing config for the OIDC URL.
    """
    root_document = _load_json(trusted_root, "trusted_root.json")
    trust = parse_trusted_root(trusted_root, signing_config)
    if signing_config is not None and trust.signing_config_media_type == SIGNING_CONFIG_V02_MEDIA_TYPE:
        config_document = _load_json(signing_config, "signing config")
    else:
        services = trust.services or _derived_services(trust)
        config_document = _signing_config_v02(services)
    data = json.dumps(
        {
            "mediaType": CLIENT_TRUST_CONFIG_MEDIA_TYPE,
            "trustedRoot": root_document,
            "signingConfig": config_document,
        },
        indent=2,
    ).encode()
    from pydantic import ValidationError
    from sigstore_models.trustroot.v1 import ClientTrustConfig

    try:
        ClientTrustConfig.from_json(data)
    except ValidationError as exc:
        raise TrustMaterialError("client trust config", _validation_problem(exc)) from None
    return data


def _derived_services(trust: SigstoreTrust) -> tuple[ServiceUrl, ...]:
    """The services a trusted root implies (CAs and TSAs with a URI, every log), each with the
    validity window and operator of the entry it comes from."""

    def service(
        kind: ServiceKind,
        url: str,
        version: int,
        entry: CertificateAuthority | TransparencyLog | TimestampAuthority,
    ) -> ServiceUrl:
        return ServiceUrl(
            kind=kind,
            url=url,
            major_api_version=version,
            valid_from=entry.valid_from,
            valid_until=entry.valid_until,
            operator=entry.operator,
        )

    return (
        *(service("ca", ca.uri, 1, ca) for ca in trust.certificate_authorities if ca.uri),
        *(service("tlog", log.base_url, log.rekor_version or 1, log) for log in trust.transparency_logs),
        *(service("tsa", tsa.uri, 1, tsa) for tsa in trust.timestamp_authorities if tsa.uri),
    )


def _signing_config_v02(services: Sequence[ServiceUrl]) -> dict[str, Any]:
    def entry(service: ServiceUrl) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": service.url,
            "majorApiVersion": service.major_api_version,
            "operator": service.operator or urlsplit(service.url).hostname or service.url,
        }
        if service.valid_from is not None:
            out["validFor"] = {"start": _rfc3339(service.valid_from)}
            if service.valid_until is not None:
                out["validFor"]["end"] = _rfc3339(service.valid_until)
        return out

    def of(kind: ServiceKind) -> list[dict[str, Any]]:
        return [entry(service) for service in services if service.kind == kind]

    return {
        "mediaType": SIGNING_CONFIG_V02_MEDIA_TYPE,
        "caUrls": of("ca"),
        "oidcUrls": of("oidc"),
        "rekorTlogUrls": of("tlog"),
        "tsaUrls": of("tsa"),
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }
