"""trusted_root.json and signing config: parse to facts, synthesize, export as client trust config.

Parsing uses `sigstore_models` (the pydantic protobuf-specs models sigstore-python itself
validates with): it is a public, typed, maintained package, and parsing with the exact model
the verifier uses means we never show facts about a file the verifier would refuse. That
model is strict (`extra="forbid"`), so a trusted root with fields sigstore-python does not
know is refused here too, with the model's message naming the field.

Keys and certificates are decoded with `cryptography` only (never by hand).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stella_trust._internal.sigstore.errors import TrustMaterialError
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
        ("ca", model.ca_urls),
        ("oidc", model.oidc_urls),
        ("tlog", model.rekor_tlog_urls),
        ("tsa", model.tsa_urls),
    )
    services = tuple(
        ServiceUrl(
            kind=kind,
            url=service.url,
            major_api_version=service.major_api_version,
            valid_from=service.valid_for.start if service.valid_for else None,
            valid_until=service.valid_for.end if service.valid_for else None,
            operator=service.operator,
        )
        for kind, group in groups
        for service in group
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
