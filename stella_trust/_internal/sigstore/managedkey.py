"""Managed-key bundles: verified with a public key the user names, no certificate.

sigstore-python 4.5.1 cannot verify them: `Bundle` refuses a bundle without a certificate
and `Verifier` only knows certificate keys. So the smallest part is done here by hand: the
message signature is checked with cryptography and the log entry body against the key; the
Merkle inclusion proof, checkpoint, SET and RFC 3161 timestamps are left to sigstore-python's
own (private, version-pinned `sigstore<5`) functions, through `_compat_sigstore`
(`TransparencyLogEntry._verify`, `Verifier._verify_signed_timestamp`). The entry is then
bound to the log whose key verified it and its validity window checked (`signedfacts`).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stella_trust._internal.sigstore import _compat_sigstore as compat
from stella_trust._internal.sigstore.bundleinput import BUNDLE_MEDIA_TYPES, refusal_for
from stella_trust._internal.sigstore.errors import (
    BundleRefusedError,
    BundleVerificationError,
    TrustMaterialError,
    classify,
)
from stella_trust._internal.sigstore.outcome import VerificationOutcome
from stella_trust._internal.sigstore.signers import KeyPolicy

if TYPE_CHECKING:
    from sigstore.hashes import Hashed
    from sigstore.verify import Verifier
    from sigstore_models.bundle.v1 import Bundle as BundleModel


def verify_with_key(
    verifier: Verifier, bundle: bytes, hashed: Hashed, artifact: bytes | None, policy: KeyPolicy
) -> VerificationOutcome:
    """Verify a managed-key `bundle` for the artifact under `policy` (its PEM key): the
    signature, the log entry against the key, and at least one verified time."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
    from sigstore.errors import Error
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    from stella_trust._internal.sigstore.signedfacts import bind_entries, check_log_windows

    try:
        key = load_pem_public_key(policy.public_key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise TrustMaterialError("public key", f"not a PEM public key: {exc}") from None
    try:
        inner = BundleModel.from_json(bundle)
    except Exception as exc:
        raise refusal_for(bundle, exc) from None
    if inner.media_type not in BUNDLE_MEDIA_TYPES:
        raise BundleRefusedError(f"unknown bundle media type {inner.media_type!r}")
    material = inner.verification_material
    if material.public_key is None:
        raise BundleVerificationError(
            "signature",
            "bundle is signed by a certificate, not a managed key; verify it with an identity and issuer",
        )
    if inner.message_signature is None:
        raise BundleVerificationError("signature", "managed-key DSSE bundles are not supported")
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    signature = inner.message_signature.signature
    try:
        _check_digest_and_signature(key, inner.message_signature.message_digest, signature, hashed, artifact)
        _, integrated = _check_log_entry(verifier, inner, spki, signature, hashed)
        timestamps = _check_times(verifier, inner, signature)
        trusted_logs = compat.model(compat.trusted_root_of(verifier)).tlogs
        bound = bind_entries(trusted_logs, inner.verification_material.tlog_entries)
        check_log_windows(bound, timestamps)
    except BundleVerificationError:
        raise
    except Exception as exc:  # sigstore Error, pydantic, base64: fail closed, name the check
        detail = str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
        raise BundleVerificationError(classify(detail), detail) from None
    return VerificationOutcome(
        checks=("signature", "digest", "log inclusion", "timestamp"),
        artifact_digest=f"sha256:{hashed.digest.hex()}",
        bundle_media_type=inner.media_type,
        signer=None,
        issuer=None,
        key_id=hashlib.sha256(spki).hexdigest(),
        log_indexes=tuple(entry.index for entry in bound),
        integrated_time=integrated,
        timestamps=timestamps,
        payload_type=None,
        log_ids=tuple(entry.log_id for entry in bound),
    )


def _check_digest_and_signature(
    key: Any, digest: Any, signature: bytes, hashed: Hashed, artifact: bytes | None
) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    if digest is not None and digest.digest != hashed.digest:
        raise BundleVerificationError("digest", "bundle message digest does not match the artifact")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, hashed.digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, hashed.digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            if artifact is None:
                raise BundleVerificationError(
                    "signature", "Ed25519 signs the artifact itself; give the artifact, not its digest"
                )
            key.verify(signature, artifact)
        else:
            raise BundleVerificationError("signature", f"unsupported key type {type(key).__name__}")
    except InvalidSignature:
        raise BundleVerificationError("signature", "signature is invalid for the artifact and key") from None


def _check_log_entry(
    verifier: Verifier, inner: BundleModel, spki: bytes, signature: bytes, hashed: Hashed
) -> tuple[int, datetime | None]:
    """Inclusion proof, checkpoint, SET (sigstore's code), then the entry body against our materials."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
    from sigstore.models import TransparencyLogEntry

    entries = inner.verification_material.tlog_entries
    if len(entries) != 1:
        raise BundleVerificationError("log inclusion", f"expected one log entry, found {len(entries)}")
    entry = TransparencyLogEntry(entries[0])
    compat.verify_entry_with_trust(entry, verifier)
    kind = entries[0].kind_version
    body = entries[0].canonicalized_body
    if (kind.kind, kind.version) == ("hashedrekord", "0.0.1"):
        import rekor_types

        spec: Any = rekor_types.Hashedrekord.model_validate_json(body).spec
        spec = getattr(spec, "root", spec)
        logged_key = load_pem_public_key(base64.b64decode(spec.signature.public_key.content))
        consistent = (
            spec.data.hash.algorithm.value == "sha256"
            and spec.data.hash.value == hashed.digest.hex()
            and base64.b64decode(spec.signature.content) == signature
            and logged_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == spki
        )
    elif (kind.kind, kind.version) == ("hashedrekord", "0.0.2"):
        from sigstore_models.rekor.v2.entry import Entry

        v2 = Entry.from_json(body).spec.hashed_rekord_v002
        consistent = (
            v2 is not None
            and v2.data.digest == hashed.digest
            and v2.signature.content == signature
            and v2.signature.verifier.public_key is not None
            and v2.signature.verifier.public_key.raw_bytes == spki
        )
    else:
        raise BundleVerificationError("log inclusion", f"unsupported entry type {kind.kind}/{kind.version}")
    if not consistent:
        raise BundleVerificationError(
            "log inclusion", "transparency log entry is inconsistent with the signature, key or artifact"
        )
    integrated = entries[0].integrated_time if entries[0].inclusion_promise else None
    return entries[0].log_index, _integrated_time(integrated)


def _check_times(verifier: Verifier, inner: BundleModel, signature: bytes) -> tuple[datetime, ...]:
    """At least one verified time (SET-bound integrated time or trusted RFC 3161 timestamp), as sigstore."""
    from sigstore.models import TimestampVerificationData

    data = inner.verification_material.timestamp_verification_data
    responses = TimestampVerificationData(data).rfc3161_timestamps if data and data.rfc3161_timestamps else []
    if responses and not compat.trusted_root_of(verifier).get_timestamp_authorities():
        raise BundleVerificationError(
            "timestamp", "bundle has signed timestamps but the trusted root names no timestamp authority"
        )
    verified = [
        time
        for response in responses
        if (time := compat.verify_signed_timestamp(verifier, response, signature)) is not None
    ]
    entry = inner.verification_material.tlog_entries[0]
    if not verified and not (entry.inclusion_promise and entry.integrated_time):
        raise BundleVerificationError("timestamp", "not enough sources of verified time")
    return tuple(verified)


def _integrated_time(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None
