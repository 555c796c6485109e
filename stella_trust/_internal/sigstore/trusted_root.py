"""trusted_root.json and signing config: parse to facts, synthesize, export as client trust config.

Parsing uses `sigstore_models` (the pydantic protobuf-specs models sigstore-python itself
validates with): it is a public, typed, maintained package, and parsing with the exact model
the verifier uses means we never show facts about a file the verifier would refuse. That
model is strict (`extra="forbid"`), so a trusted root with fields sigstore-python does not
know is refused here too, with the model's message naming the field.

Keys and certificates are decoded with `cryptography` only (never by hand).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stella_trust._internal.sigstore.errors import TrustMaterialError
from stella_trust._internal.timefmt import iso
from stella_trust.sigstore_types import (
    CertificateAuthority,
    ServiceKind,
    ServiceUrl,
    SigningConfigFacts,
    SigstoreTrust,
    TimestampAuthority,
    TransparencyLog,
)

if TYPE_CHECKING:
    from sigstore_models.trustroot.v1 import CertificateAuthority as CAModel
    from sigstore_models.trustroot.v1 import TransparencyLogInstance

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
SIGNING_CONFIG_V02_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
SIGNING_CONFIG_V01_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.1+json"
CLIENT_TRUST_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
_LEGACY_KEYS = frozenset({"caUrl", "oidcUrl", "tlogUrls", "tsaUrls"})  # the v0.1 shape (signing_config.json)


def _load_json(data: bytes, target: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrustMaterialError(target, f"not JSON ({exc})") from None


def _validation_problem(exc: Exception) -> str:
    """pydantic's first error as `field.path: message` (its full report spans many lines)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "(document)"
        return f"{where}: {first.get('msg', exc)}"
    return str(exc)


def parse_signing_config(data: bytes, *, target: str = "signing_config.v0.2.json") -> SigningConfigFacts:
    """Service URLs from a signing config: v0.2 (`*Urls` lists of Service) or the older v0.1 shape.

    The v0.1 file (`signing_config.json`: `caUrl`, `oidcUrl`, `tlogUrls`, `tsaUrls`) has no
    versions or validity, so its services are reported as API v1 with an open window.
    """
    document = _load_json(data, target)
    if not isinstance(document, dict):
        raise TrustMaterialError(target, "not a JSON object")
    media_type = document.get("mediaType")
    if media_type == SIGNING_CONFIG_V01_MEDIA_TYPE and _LEGACY_KEYS.intersection(document):
        return _legacy_signing_config(document, target)
    if media_type not in (SIGNING_CONFIG_V01_MEDIA_TYPE, SIGNING_CONFIG_V02_MEDIA_TYPE):
        raise TrustMaterialError(target, f"unknown signing config media type {media_type!r}")

    from pydantic import ValidationError
    from sigstore_models.trustroot.v1 import SigningConfig

    try:
        model = SigningConfig.from_json(data)
    except ValidationError as exc:
        raise TrustMaterialError(target, _validation_problem(exc)) from None
    groups: tuple[tuple[ServiceKind, Sequence[Any]], ...] = (
        ("ca", model.ca_urls), ("oidc", model.oidc_urls),
        ("tlog", model.rekor_tlog_urls), ("tsa", model.tsa_urls),
    )
    services = tuple(
        ServiceUrl(
            kind=kind, url=service.url, major_api_version=service.major_api_version,
            valid_from=service.valid_for.start if service.valid_for else None,
            valid_until=service.valid_for.end if service.valid_for else None,
            operator=service.operator,
        )
        for kind, group in groups for service in group
    )
    return SigningConfigFacts(media_type=media_type, services=services)


def _legacy_signing_config(document: Mapping[str, Any], target: str) -> SigningConfigFacts:
    urls: list[tuple[ServiceKind, Any]] = [("ca", document.get("caUrl")), ("oidc", document.get("oidcUrl"))]
    urls += [("tlog", url) for url in document.get("tlogUrls") or ()]
    urls += [("tsa", url) for url in document.get("tsaUrls") or ()]
    services: list[ServiceUrl] = []
    for kind, url in urls:
        if url is None:
            continue
        if not isinstance(url, str):
            raise TrustMaterialError(target, f"{kind} URL is not a string: {url!r}")
        services.append(
            ServiceUrl(kind=kind, url=url, major_api_version=1, valid_from=None, valid_until=None)
        )
    return SigningConfigFacts(media_type=SIGNING_CONFIG_V01_MEDIA_TYPE, services=tuple(services))


def parse_trusted_root(
    data: bytes, signing_config: bytes | None = None, *, target: str = "trusted_root.json"
) -> SigstoreTrust:
    """Facts of a trusted_root.json; the signing config, when given, adds services and Rekor versions."""
    _load_json(data, target)  # a clear "not JSON" before pydantic's generic message
    from pydantic import ValidationError
    from sigstore_models.trustroot.v1 import TrustedRoot

    try:
        model = TrustedRoot.from_json(data)
    except ValidationError as exc:
        raise TrustMaterialError(target, _validation_problem(exc)) from None
    config = parse_signing_config(signing_config) if signing_config is not None else None
    tlog_versions = {
        service.url.rstrip("/"): service.major_api_version
        for service in (config.services if config else ())
        if service.kind == "tlog"
    }
    try:
        return SigstoreTrust(
            media_type=model.media_type,
            transparency_logs=tuple(_log("rekor", tlog, tlog_versions) for tlog in model.tlogs),
            ctlogs=tuple(_log("ctlog", tlog, {}) for tlog in model.ctlogs),
            certificate_authorities=tuple(
                CertificateAuthority(**_chain_fields(ca)) for ca in model.certificate_authorities
            ),
            timestamp_authorities=tuple(
                TimestampAuthority(**_chain_fields(tsa)) for tsa in model.timestamp_authorities
            ),
            services=config.services if config else (),
            signing_config_media_type=config.media_type if config else None,
        )
    except ValueError as exc:  # cryptography refuses a key or certificate
        raise TrustMaterialError(target, str(exc)) from None


def _key_algorithm(key_details: str) -> str:
    """`PKIX_ECDSA_P256_SHA_256` -> `ecdsa-p256-sha256`, `PKIX_ED25519` -> `ed25519`."""
    name = key_details.lower().removeprefix("pkix_").replace("_", "-")
    return name.replace("sha-", "sha")


def _log(kind: str, tlog: TransparencyLogInstance, versions: Mapping[str, int]) -> TransparencyLog:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_der_public_key,
    )

    if not tlog.public_key.raw_bytes:
        raise ValueError(f"log {tlog.base_url} has no public key bytes")
    key = load_der_public_key(tlog.public_key.raw_bytes)
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    algorithm = _key_algorithm(tlog.public_key.key_details.value)
    window = tlog.public_key.valid_for
    version: int | None = None
    source: Any = None
    if kind == "rekor":
        listed = versions.get(tlog.base_url.rstrip("/"))
        if listed:
            version, source = listed, "signing-config"
        else:  # Rekor v2 (tile) logs sign checkpoints with Ed25519; Rekor v1 logs use ECDSA
            version, source = (2 if algorithm == "ed25519" else 1), "inferred"
    return TransparencyLog(
        kind="rekor" if kind == "rekor" else "ctlog",
        base_url=tlog.base_url,
        log_id=tlog.log_id.key_id.hex(),
        key_algorithm=algorithm,
        spki_sha256=hashlib.sha256(der).hexdigest(),
        public_key_pem=key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
        valid_from=window.start if window else None,
        valid_until=window.end if window else None,
        rekor_version=version,
        rekor_version_source=source,
        operator=tlog.operator,
    )


def _chain_fields(authority: CAModel) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import load_der_x509_certificate

    certs = [load_der_x509_certificate(cert.raw_bytes) for cert in authority.cert_chain.certificates]
    return {
        "uri": authority.uri,
        "subjects": tuple(cert.subject.rfc4514_string() for cert in certs),
        "chain_pems": tuple(cert.public_bytes(Encoding.PEM).decode() for cert in certs),
        "fingerprints": tuple(hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() for cert in certs),
        "valid_from": authority.valid_for.start,
        "valid_until": authority.valid_for.end,
        "operator": authority.operator,
    }


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
        details = {"secp256r1": "PKIX_ECDSA_P256_SHA_256", "secp384r1": "PKIX_ECDSA_P384_SHA_384",
                   "secp521r1": "PKIX_ECDSA_P521_SHA_512"}.get(key.curve.name)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        details = "PKIX_ED25519"
    elif isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
        details = f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    else:
        details = None
    if details is None:
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    entry = {"rawBytes": base64.b64encode(der).decode(), "keyDetails": details,
             "validFor": {"start": _rfc3339(valid_from)}}
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
                "subject": {"organization": str(org[0]) if org else "", "commonName": str(common[0]) if common
                            else ""},
                "uri": url,
                "certChain": {"certificates": [
                    {"rawBytes": base64.b64encode(cert.public_bytes(Encoding.DER)).decode()} for cert in certs
                ]},
                "validFor": {"start": _rfc3339(start)},
            }

        ctlogs = []
        for url, pem in ctlog_keys:
            entry, der = _public_key_entry(pem, start)
            ctlogs.append({"baseUrl": url, "hashAlgorithm": "SHA2_256", "publicKey": entry,
                           "logId": {"keyId": base64.b64encode(hashlib.sha256(der).digest()).decode()}})
        tsas = [
            _ca(url, [cert for pem in pems for cert in load_pem_x509_certificates(pem.encode())])
            for url, pems in timestamp_authorities
        ]
    except ValueError as exc:
        raise TrustMaterialError("synthesized trusted_root.json", str(exc)) from None
    document = {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [{"baseUrl": rekor_url, "hashAlgorithm": "SHA2_256", "publicKey": rekor_key,
                   "logId": {"keyId": base64.b64encode(hashlib.sha256(rekor_der).digest()).decode()}}],
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


def load_trusted_root(data: bytes, *, target: str = "trusted_root.json") -> Any:
    """sigstore-python's `TrustedRoot` from bytes we hold (never from its own TUF cache).

    `TrustedRoot.from_file` is `from_json` on the file's bytes followed by this same
    constructor; we skip the file because the bytes come from our re-verified cache.
    """
    from pydantic import ValidationError
    from sigstore.errors import Error
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootModel

    _load_json(data, target)
    try:
        return TrustedRoot(TrustedRootModel.from_json(data))
    except ValidationError as exc:
        raise TrustMaterialError(target, _validation_problem(exc)) from None
    except Error as exc:
        raise TrustMaterialError(target, str(exc)) from None


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
    data = json.dumps({
        "mediaType": CLIENT_TRUST_CONFIG_MEDIA_TYPE,
        "trustedRoot": root_document,
        "signingConfig": config_document,
    }, indent=2).encode()
    from pydantic import ValidationError
    from sigstore_models.trustroot.v1 import ClientTrustConfig

    try:
        ClientTrustConfig.from_json(data)
    except ValidationError as exc:
        raise TrustMaterialError("client trust config", _validation_problem(exc)) from None
    return data


def _derived_services(trust: SigstoreTrust) -> tuple[ServiceUrl, ...]:
    services = [
        ServiceUrl(kind="ca", url=ca.uri, major_api_version=1, valid_from=ca.valid_from,
                   valid_until=ca.valid_until, operator=ca.operator)
        for ca in trust.certificate_authorities if ca.uri
    ]
    services += [
        ServiceUrl(kind="tlog", url=log.base_url, major_api_version=log.rekor_version or 1,
                   valid_from=log.valid_from, valid_until=log.valid_until, operator=log.operator)
        for log in trust.transparency_logs
    ]
    services += [
        ServiceUrl(kind="tsa", url=tsa.uri, major_api_version=1, valid_from=tsa.valid_from,
                   valid_until=tsa.valid_until, operator=tsa.operator)
        for tsa in trust.timestamp_authorities if tsa.uri
    ]
    return tuple(services)


def _signing_config_v02(services: Sequence[ServiceUrl]) -> dict[str, Any]:
    def entry(service: ServiceUrl) -> dict[str, Any]:
        out: dict[str, Any] = {"url": service.url, "majorApiVersion": service.major_api_version,
                               "operator": service.operator or urlsplit(service.url).hostname or service.url}
        if service.valid_from is not None:
            out["validFor"] = {"start": _rfc3339(service.valid_from)}
            if service.valid_until is not None:
                out["validFor"]["end"] = _rfc3339(service.valid_until)
        return out

    def of(kind: ServiceKind) -> list[dict[str, Any]]:
        return [entry(service) for service in services if service.kind == kind]

    return {
        "mediaType": SIGNING_CONFIG_V02_MEDIA_TYPE,
        "caUrls": of("ca"), "oidcUrls": of("oidc"), "rekorTlogUrls": of("tlog"), "tsaUrls": of("tsa"),
        "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"},
    }
