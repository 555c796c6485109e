"""Offline Sigstore bundle verification with trust we hand in (DESIGN decision 7).

The verifier is built only from trusted-root bytes the caller passes (from the re-verified
trust view, or a file the user names): never `Verifier.production()`, never sigstore-python's
own TUF cache, never the network. Certificate-signed bundles (message signature or DSSE, Rekor
v1 or v2, SCTs, RFC 3161 timestamps) are delegated whole to `sigstore.verify.Verifier`; for DSSE
we add the in-toto subject check that `verify_dsse` leaves to callers. Managed-key bundles,
which sigstore-python cannot verify, are managedkey.py's.

After sigstore-python accepts a bundle, `signedfacts` binds its log entry to the log whose
key verified it (never the bundle's `logId`, which is only a claim), takes the index and tree
size from the proved and signed data, and checks the validity windows sigstore-python leaves
unchecked (log key, CA): a log key or CA outside its window must not vouch for an entry.
Input is bounded before any parser sees it (bundleinput.py), so a hostile document is one
line, not a RecursionError.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.sigstore import _compat_sigstore as compat
from stella_trust._internal.sigstore.bundleinput import refusal_for, require_bounded_json
from stella_trust._internal.sigstore.errors import BundleVerificationError, classify
from stella_trust._internal.sigstore.managedkey import verify_with_key
from stella_trust._internal.sigstore.outcome import VerificationOutcome
from stella_trust._internal.sigstore.signers import (
    IdentityPolicy,
    KeyPolicy,
    Policy,
    identities_of,
    issuer_of,
)
from stella_trust._internal.sigstore.trusted_root import load_trusted_root
from stella_trust.errors import UsageError

if TYPE_CHECKING:
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    from stella_trust._internal.sigstore.intoto_entry import IntotoVerifier
    from stella_trust._internal.sigstore.signedfacts import BoundEntry

# VerificationOutcome is public (stella_trust.VerificationOutcome names it here).
__all__ = ["VerificationOutcome", "verify_bundle"]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")


# What a verification imports on first use (sigstore-python's verifier and models, the in-toto
# entry, the log binding): `import_verifier` loads them ahead.
VERIFIER_MODULES = (
    "cryptography.hazmat.backends.openssl.backend",
    "encodings.utf_16_be",  # a certificate's BMPString names
    "sigstore.dsse",
    "sigstore.errors",
    "sigstore.hashes",
    "sigstore.models",
    "sigstore_models.common.v1",
    "stella_trust._internal.sigstore.intoto_entry",
    "stella_trust._internal.sigstore.signedfacts",
)


def import_verifier() -> None:
    """Import now every module a verification would import on first use: `trust verify`'s worker
    does it while the trust is read (verify_worker.py). A test keeps VERIFIER_MODULES whole:
    after this, verifying a bundle imports nothing."""
    import importlib

    for name in VERIFIER_MODULES:
        importlib.import_module(name)


def _verifier(trusted_root: bytes, memo: VerificationMemo | None) -> IntotoVerifier:
    """One Verifier per distinct trusted-root content, remembered in the caller's memo (if any):
    identical bytes are identical trust."""
    key = hashlib.sha256(trusted_root).digest()
    if memo is not None:
        held: IntotoVerifier | None = memo.verifiers.get(key)
        if held is not None:
            return held
    verifier = _build_verifier(trusted_root)
    if memo is not None:
        memo.verifiers.put(key, verifier)
    return verifier


def _build_verifier(trusted_root: bytes) -> IntotoVerifier:
    """A Verifier for `trusted_root`, with the TSA validity window read as protobuf-specs says.
    The bounds of decision 5 apply before it is parsed; a remembered verifier was built from
    byte-identical input that met them."""
    from sigstore.errors import Error

    from stella_trust._internal.sigstore.intoto_entry import IntotoVerifier

    require_bounded_json(trusted_root, "trusted root")
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


def verify_bundle(
    trusted_root: bytes,
    bundle: bytes,
    artifact: bytes | str,
    policy: Policy,
    *,
    memo: VerificationMemo | None = None,
) -> VerificationOutcome:
    """Verify `bundle` for `artifact` (bytes, or "sha256:<hex>") under `policy`, offline.

    `memo` keeps the verifier built from `trusted_root` for the next call (a long-lived
    process verifying many bundles); without one it is built for this call only.
    Raises BundleRefusedError (input unreadable), BundleVerificationError (a named check
    failed), TrustMaterialError (trusted root unreadable) or UsageError (bad digest string).
    """
    require_bounded_json(bundle, "bundle")
    verifier = _verifier(trusted_root, memo)
    hashed, artifact_bytes = _hashed(artifact)
    if isinstance(policy, KeyPolicy):
        return verify_with_key(verifier, bundle, hashed, artifact_bytes, policy)

    from sigstore.errors import Error
    from sigstore.models import Bundle

    try:
        parsed = Bundle.from_json(bundle)
    except Exception as exc:  # InvalidBundle, pydantic or base64 errors: all refuse the bundle
        raise refusal_for(bundle, exc) from None
    verifier.begin_recording()
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


def _bind_and_window(verifier: IntotoVerifier, bundle: Bundle) -> list[BoundEntry]:
    """The entry bound to the log whose key verified it, and the validity windows
    sigstore-python does not check (signedfacts.py), with the times it established."""
    from stella_trust._internal.sigstore.signedfacts import bind_entries, check_ca_window, check_log_windows

    inner = compat.model(bundle)
    trusted = compat.model(compat.trusted_root_of(verifier))
    bound = bind_entries(trusted.tlogs, inner.verification_material.tlog_entries)
    times, chains = verifier.recorded()  # what sigstore-python's own steps just established
    established = (
        compat.established_times(verifier, bundle) if times is None else compat.as_established(times)
    )
    check_log_windows(bound, [time for from_tsa, time in established if from_tsa])
    leaf = bundle.signing_certificate
    issuers = [issuer for certificate, issuer in chains if certificate == leaf]
    check_ca_window(leaf, trusted.certificate_authorities, [t for _, t in established], issuers)
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


def _tsa_times(inner: BundleModel) -> tuple[datetime, ...]:
    """genTime of each RFC 3161 timestamp (at least one was verified against the trusted TSAs)."""
    from sigstore.models import TimestampVerificationData

    data = inner.verification_material.timestamp_verification_data
    if data is None or not data.rfc3161_timestamps:
        return ()
    return tuple(ts.tst_info.gen_time for ts in TimestampVerificationData(data).rfc3161_timestamps)
