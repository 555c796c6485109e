"""DSSE bundles logged as Rekor v1 `intoto/0.0.2` entries, which sigstore-python 4.5.1 refuses.

Older cosign attestations were logged as `intoto` entries; sigstore-python verifies DSSE
only against `dsse/0.0.1` and Rekor v2 entries. `IntotoVerifier` keeps every step of
sigstore's own verification (`_verify_common_signing_cert`: time, chain, SCT, policy,
inclusion proof, checkpoint, SET, certificate validity; `dsse._verify`: the signature)
and adds two small pieces for this entry kind only: the SET-bound integrated time counts as
a verified time (sigstore accepts it for dsse/hashedrekord 0.0.1 alike), and the entry body
is checked against the envelope (payload hash, payload type, signatures, certificate).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stella_trust._internal.sigstore import _compat_sigstore as compat

if TYPE_CHECKING:
    from sigstore.models import Bundle
    from sigstore.verify.policy import VerificationPolicy

INTOTO_KIND = ("intoto", "0.0.2")


def is_intoto_entry(bundle: Bundle) -> bool:
    """Whether the bundle's log entry is the older intoto kind that sigstore-python 4.5.1
    does not verify, so it must go through `IntotoVerifier`."""
    kind = compat.model(bundle.log_entry).kind_version
    return (kind.kind, kind.version) == INTOTO_KIND


class IntotoVerifier(compat.verifier_base()):  # type: ignore[misc]
    """sigstore's Verifier, taught one more (older) log entry kind; all other bundles go to
    super(). The private steps it extends are listed in `_compat_sigstore.REQUIRED`.

    It also keeps, per thread, what sigstore-python's own steps established during the last
    verification that thread began (`begin_recording`): the verified times, and the certificate
    cryptography's chain builder used as the leaf's issuer. The checks sigstore-python leaves
    out (signedfacts.py) read them instead of establishing the times again and verifying the
    leaf's signature against every CA certificate (issue 24). Per thread: one verifier serves
    every thread of a process that verifies with the same trust (the memo's)."""

    def __init__(self, **kwargs: Any) -> None:
        """sigstore's Verifier (`trusted_root=`), and an empty per-thread record."""
        super().__init__(**kwargs)
        self._seen = threading.local()

    def begin_recording(self) -> None:
        """Forget what this thread's last verification established (call before each one)."""
        self._seen.times = None
        self._seen.issuers = []

    def recorded(self) -> tuple[list[Any] | None, list[tuple[Any, Any]]]:
        """What this thread's verification since `begin_recording` established: the verified
        times (None: not established) and (leaf, issuing certificate) per chain built."""
        return getattr(self._seen, "times", None), list(getattr(self._seen, "issuers", ()))

    def _establish_time(self, bundle: Bundle) -> list[Any]:
        times = self._established(bundle)
        self._seen.times = times
        return times

    def _verify_chain_at_time(self, certificate: Any, timestamp_result: Any) -> list[Any]:
        chain = compat.verify_chain_at_time_of_base(self, certificate, timestamp_result)
        if chain:
            self._seen.issuers = [*getattr(self._seen, "issuers", ()), (certificate, chain[0])]
        return chain

    def _established(self, bundle: Bundle) -> list[Any]:
        if not is_intoto_entry(bundle):
            return list(compat.establish_time_of_base(self, bundle))
        from sigstore.errors import VerificationError

        times: list[Any] = []
        if bundle.verification_material.timestamp_verification_data:
            if not compat.trusted_root_of(self).get_timestamp_authorities():
                raise VerificationError("bundle has a signed timestamp but the trusted root has no TSA")
            times.extend(compat.verify_timestamp_authority(self, bundle))
        entry = compat.model(bundle.log_entry)
        if entry.integrated_time and entry.inclusion_promise:  # the SET is verified with the entry
            times.append(compat.transparency_time(datetime.fromtimestamp(entry.integrated_time, tz=UTC)))
        return times

    def verify_intoto_dsse(self, bundle: Bundle, policy: VerificationPolicy) -> tuple[str, bytes]:
        """`verify_dsse` for an intoto/0.0.2 entry: same steps, with the matching body check."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from sigstore.errors import VerificationError

        compat.verify_common_signing_cert(self, bundle, policy)
        envelope = compat.dsse_envelope(bundle)
        key = bundle.signing_certificate.public_key()
        if envelope is None or not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationError("intoto entry needs a DSSE envelope signed with an EC key")
        compat.dsse_verify(key, envelope)
        _check_body(bundle)
        inner = compat.model(envelope)
        return inner.payload_type, inner.payload


def _check_body(bundle: Bundle) -> None:
    import rekor_types
    from cryptography.x509 import load_pem_x509_certificate
    from sigstore.errors import VerificationError

    envelope: Any = compat.model(bundle).dsse_envelope
    logged_body = compat.model(bundle.log_entry).canonicalized_body
    body: Any = rekor_types.Intoto.model_validate_json(logged_body).spec
    content = getattr(body, "root", body).content
    logged = content.envelope
    payload_hash = content.payload_hash
    if payload_hash is None or payload_hash.value != hashlib.sha256(envelope.payload).hexdigest():
        raise VerificationError("log entry payload hash does not match bundle")
    if logged.payload_type != envelope.payload_type:
        raise VerificationError("log entry payload type does not match bundle")
    if logged.payload is not None and base64.b64decode(base64.b64decode(logged.payload)) != envelope.payload:
        raise VerificationError("log entry payload does not match bundle")
    cert = bundle.signing_certificate
    logged_signatures = sorted(
        (
            base64.b64decode(base64.b64decode(sig.sig)),
            load_pem_x509_certificate(base64.b64decode(sig.public_key)) == cert,
        )
        for sig in logged.signatures
    )
    if logged_signatures != sorted((sig.sig, True) for sig in envelope.signatures):
        raise VerificationError("log entry signatures do not match bundle")
