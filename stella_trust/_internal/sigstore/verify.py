"""Offline Sigstore bundle verification with trust we hand in (DESIGN decision 7).

The verifier is built only from trusted-root bytes the caller passes (from the re-verified
trust view, or a file the user names): never `Verifier.production()`, never sigstore-python's
own TUF cache, never the network. Certificate-signed bundles (message signature or DSSE, Rekor
v1 or v2, SCTs, RFC 3161 timestamps) are delegated whole to `sigstore.verify.Verifier`; for DSSE
we add the in-toto subject check that `verify_dsse` leaves to callers.

Managed-key bundles: sigstore-python 4.5.1 cannot verify them — `Bundle` refuses a bundle
without a certificate and `Verifier` only knows certificate keys. `_verify_with_key` therefore
does the smallest part by hand: it checks the message signature with cryptography and the log
entry body against the key, and leaves the Merkle inclusion proof, checkpoint, SET and RFC 3161
timestamps to sigstore-python's own (private, version-pinned `sigstore<5`) functions:
`TransparencyLogEntry._verify` and `Verifier._verify_signed_timestamp`.

After sigstore-python accepts a bundle, `signedfacts` binds its log entry to the log whose
key verified it (never the bundle's `logId`), takes the index and tree size from the proved
and signed data, and checks the validity windows sigstore-python leaves unchecked (log key,
CA), issue 21. Input is bounded before any parser sees it: at most MAX_BUNDLE_BYTES and
MAX_JSON_DEPTH levels of nesting (a 200,000-deep bundle is one line, not a RecursionError).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from stella_trust._internal.sigstore import _compat_sigstore as compat
from stella_trust._internal.sigstore.errors import (
    BundleRefusedError,
    BundleVerificationError,
    Check,
    TrustMaterialError,
)
from stella_trust._internal.sigstore.policy import IdentityPolicy, KeyPolicy, Policy, identities_of, issuer_of
from stella_trust._internal.sigstore.trusted_root import load_trusted_root
from stella_trust.errors import UsageError

if TYPE_CHECKING:
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    from stella_trust._internal.sigstore.intoto_entry import IntotoVerifier
    from stella_trust._internal.sigstore.signedfacts import BoundEntry

MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # real bundles are a few KiB; a larger one is refused unread
MAX_JSON_DEPTH = 64  # a real bundle or trusted root nests about 8 deep; parsers recurse per level
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, escapes included (RFC 8259 §7)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)
# sigstore's VerificationError / InvalidBundle messages -> the check a user reads. First match wins.
_CHECK_WORDS: tuple[tuple[Check, tuple[str, ...]], ...] = (
    ("identity", ("certificate's", "oidcissuer", "sans do not match")),
    ("digest", ("digest",)),
    ("SCT", ("sct",)),
    (
        "chain",
        (
            "certificate chain",
            "expired at time of signing",
            "key usage",
            "extended usage",
            "certificate in bundle",
            "leaf",
            "certificate",
        ),
    ),
    ("timestamp", ("or signed timestamp", "verified time", "signed time")),
    (
        "log inclusion",
        (
            "log entry",
            "inclusion",
            "checkpoint",
            "set:",
            "merkle",
            "inconsistent",
            "tlog",
            "transparency log",
        ),
    ),
    ("timestamp", ("timestamp",)),
)


@dataclass(frozen=True, kw_only=True)
class VerificationOutcome:
    """What a successful verification established (only built once every check passed)."""

    checks: tuple[str, ...]
    artifact_digest: str
    bundle_media_type: str
    signer: str | None
    issuer: str | None
    key_id: str | None
    log_indexes: tuple[int, ...]  # proved by the inclusion proof against the signed checkpoint
    integrated_time: datetime | None
    timestamps: tuple[datetime, ...]
    payload_type: str | None
    log_ids: tuple[str, ...] = ()  # hex: the trust's logs whose keys verified the entries


def classify(message: str) -> Check:
    """Which check a sigstore-python failure message is about ("signature" when none is named)."""
    lowered = message.lower()
    for check, words in _CHECK_WORDS:
        if any(word in lowered for word in words):
            return check
    return "signature"


@lru_cache(maxsize=4)
def _verifier(trusted_root: bytes) -> IntotoVerifier:
    """One Verifier per distinct trusted-root content: identical bytes are identical trust."""
    from sigstore.errors import Error

    from stella_trust._internal.sigstore.intoto_entry import IntotoVerifier

    root = load_trusted_root(trusted_root)
    # TimeRange is a closed interval (protobuf-specs), but sigstore 4.5.1 compares a TSA's
    # `genTime < end`. Moving `end` by one microsecond (datetime's resolution) makes its
    # half-open test exactly the closed one, in this Verifier's private copy only.
    for authority in compat.model(root).timestamp_authorities:
        if authority.valid_for.end is not None:
            authority.valid_for.end += timedelta(microseconds=1)
    try:
        return IntotoVerifier(trusted_root=root)
    except Error as exc:
        raise BundleVerificationError("chain", f"trusted root is unusable: {exc}") from None


def _hashed(artifact: bytes | str) -> tuple[Hashed, bytes | None]:
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm

    if isinstance(artifact, str):
        match = _DIGEST.fullmatch(artifact)
        if match is None:
            raise UsageError(f"artifact digest must be sha256:<64 hex digits>, got {artifact[:80]!r}")
        return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(match.group(1))), None
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=hashlib.sha256(artifact).digest()), artifact


def _refusal_for(bundle: bytes, exc: Exception) -> BundleRefusedError | BundleVerificationError:
    """Why a bundle did not load: named precisely on this (rare) path, so the happy path parses once."""
    try:
        document = json.loads(bundle)
    except (ValueError, UnicodeDecodeError) as json_exc:
        return BundleRefusedError(f"bundle is not JSON: {json_exc}")
    media_type = document.get("mediaType") if isinstance(document, dict) else None
    if media_type not in _BUNDLE_MEDIA_TYPES:
        return BundleRefusedError(f"unknown bundle media type {media_type!r}")
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    from pydantic import ValidationError

    if "failed to load bundle" in message or isinstance(exc, ValidationError):
        return BundleRefusedError(f"malformed bundle: {' '.join(str(exc).split())[:300]}")
    if "certificate" in message and (document.get("verificationMaterial") or {}).get("publicKey"):
        return BundleVerificationError(
            "chain", "bundle is signed by a managed key, not a certificate; verify it with the public key"
        )
    return BundleVerificationError(classify(message), message)


def verify_bundle(
    trusted_root: bytes, bundle: bytes, artifact: bytes | str, policy: Policy
) -> VerificationOutcome:
    """Verify `bundle` for `artifact` (bytes, or "sha256:<hex>") under `policy`, offline.

    Raises BundleRefusedError (input unreadable), BundleVerificationError (a named check
    failed), TrustMaterialError (trusted root unreadable) or UsageError (bad digest string).
    """
    require_bounded_json(bundle, "bundle")
    require_bounded_json(trusted_root, "trusted root")
    verifier = _verifier(trusted_root)
    hashed, artifact_bytes = _hashed(artifact)
    if isinstance(policy, KeyPolicy):
        return _verify_with_key(verifier, bundle, hashed, artifact_bytes, policy)

    from sigstore.errors import Error
    from sigstore.models import Bundle

    try:
        parsed = Bundle.from_json(bundle)
    except Exception as exc:  # InvalidBundle, pydantic or base64 errors: all refuse the bundle
        raise _refusal_for(bundle, exc) from None
    try:
        payload_type = _verify_parsed(verifier, parsed, hashed, policy)
        bound = _bind_and_window(verifier, parsed)
    except BundleVerificationError:
        raise
    except Error as exc:
        raise BundleVerificationError(classify(str(exc)), str(exc)) from None
    except Exception as exc:  # fail closed: any surprise inside verification is a failed verification
        raise BundleVerificationError(classify(str(exc)), f"{type(exc).__name__}: {exc}") from None
    return _outcome(parsed, hashed, policy, payload_type, bound)


def require_bounded_json(data: bytes, what: str) -> None:
    """At most MAX_BUNDLE_BYTES and MAX_JSON_DEPTH levels of arrays and objects, or one line
    (BundleRefusedError) before any parser recurses into it. Brackets inside strings are not
    counted; a document that is not JSON is left for the parser to name."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefusedError(f"{what} is {len(data)} bytes, above the {MAX_BUNDLE_BYTES}-byte limit")
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b'""', data)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > MAX_JSON_DEPTH:
            raise BundleRefusedError(
                f"{what} nests arrays and objects more than {MAX_JSON_DEPTH} deep (a Sigstore document "
                "nests about 8): refused unparsed"
            )


def _bind_and_window(verifier: IntotoVerifier, bundle: Bundle) -> list[BoundEntry]:
    """The entry bound to the log whose key verified it, and the validity windows
    sigstore-python does not check (signedfacts.py), with the times it established."""
    from stella_trust._internal.sigstore.signedfacts import bind_entries, check_ca_window, check_log_windows

    inner = compat.model(bundle)
    trusted = compat.model(compat.trusted_root_of(verifier))
    bound = bind_entries(trusted.tlogs, inner.verification_material.tlog_entries)
    established = compat.established_times(verifier, bundle)
    check_log_windows(bound, [time for from_tsa, time in established if from_tsa])
    check_ca_window(bundle.signing_certificate, trusted.certificate_authorities, [t for _, t in established])
    return bound


def _verify_parsed(
    verifier: IntotoVerifier, bundle: Bundle, hashed: Hashed, policy: IdentityPolicy
) -> str | None:
    from sigstore import dsse
    from sigstore.errors import Error

    from stella_trust._internal.sigstore.intoto_entry import is_intoto_entry

    sigstore_policy: Any = policy.sigstore_policy()
    if compat.model(bundle).dsse_envelope is None:
        verifier.verify_artifact(input_=hashed, bundle=bundle, policy=sigstore_policy)
        return None
    if is_intoto_entry(bundle):
        payload_type, payload = verifier.verify_intoto_dsse(bundle, sigstore_policy)
    else:
        payload_type, payload = verifier.verify_dsse(bundle, sigstore_policy)
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise BundleVerificationError(
            "digest",
            f"DSSE payload type {payload_type!r} is not an in-toto statement, so it cannot name the artifact",
        )
    try:
        statement = dsse.Statement(payload)
    except Error as exc:
        raise BundleVerificationError("digest", str(exc)) from None
    # sigstore-python's CLI makes this same check; verify_dsse does not (see NOTES).
    if not statement._matches_digest(hashed):
        raise BundleVerificationError(
            "digest", f"in-toto statement has no subject with sha256 {hashed.digest.hex()}"
        )
    return payload_type


def _outcome(
    bundle: Bundle, hashed: Hashed, policy: IdentityPolicy, payload_type: str | None, bound: list[BoundEntry]
) -> VerificationOutcome:
    cert = bundle.signing_certificate
    if policy.identity is not None:
        signer: str | None = policy.identity
    else:
        signer = next(
            (
                san
                for san in identities_of(cert)
                if policy._patterns[0] is not None and policy._patterns[0].fullmatch(san)
            ),
            None,
        )
    checks = ["chain", "SCT", "identity", "log inclusion", "timestamp", "signature", "digest"]
    return VerificationOutcome(
        checks=tuple(checks),
        artifact_digest=f"sha256:{hashed.digest.hex()}",
        bundle_media_type=compat.model(bundle).media_type,
        signer=signer,
        issuer=policy.issuer if policy.issuer is not None else issuer_of(cert),
        key_id=None,
        log_indexes=tuple(entry.index for entry in bound),
        integrated_time=next((entry.integrated_time for entry in bound if entry.integrated_time), None),
        timestamps=_tsa_times(compat.model(bundle)),
        payload_type=payload_type,
        log_ids=tuple(entry.log_id for entry in bound),
    )


def _integrated_time(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


def _tsa_times(inner: BundleModel) -> tuple[datetime, ...]:
    """genTime of each RFC 3161 timestamp (at least one was verified against the trusted TSAs)."""
    from sigstore.models import TimestampVerificationData

    data = inner.verification_material.timestamp_verification_data
    if data is None or not data.rfc3161_timestamps:
        return ()
    return tuple(ts.tst_info.gen_time for ts in TimestampVerificationData(data).rfc3161_timestamps)


def _verify_with_key(
    verifier: Verifier, bundle: bytes, hashed: Hashed, artifact: bytes | None, policy: KeyPolicy
) -> VerificationOutcome:
    """Managed-key verification (sigstore-python has none); see the module docstring."""
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
        raise _refusal_for(bundle, exc) from None
    if inner.media_type not in _BUNDLE_MEDIA_TYPES:
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
