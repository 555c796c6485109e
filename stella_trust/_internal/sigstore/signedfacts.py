"""What a verified bundle is bound to: its log, its signed index and size, and validity windows.

Run after sigstore-python 4.5.1 accepted a bundle, for the checks it does not make (as
read from its source, `sigstore/models.py`, `_internal/trust.py`, `verify/verifier.py`):

* **Which log.** sigstore-python's `Keyring.verify` treats the entry's `logId` as "an
  unauthenticated hint; if no key matches the given key ID, all keys in the keyring are
  tried", and Rekor v2 log IDs (C2SP key hashes) never match its SPKI-hash key IDs. So a
  bundle may name any log. Here the log is the one whose key, *alone* in a keyring, makes
  sigstore-python's own entry verification (inclusion proof, signed checkpoint, and SET when
  present: `TransparencyLogEntry._verify`) pass; the bundle's `logId` must name that log, and
  an entry naming a log the trust does not hold is refused.
* **Which index and size.** sigstore-python verifies the inclusion proof for the proof's
  `logIndex` and `treeSize` against the checkpoint's signed root, but never compares the
  proof's `treeSize` with the checkpoint's signed size, nor the entry's `logIndex` with the
  proof's. The sizes must agree here; so must the indexes when no SET signs the entry's
  `logIndex` (Rekor v2: one tree per log, and the field is unsigned) — a SET-signed index is
  Rekor v1's global index across its shards and legitimately differs from the tree's. The
  index and size reported are the proved and signed ones.
* **Validity windows.** sigstore-python builds its Rekor and CT keyrings with every key
  whose window has *started* by the wall clock (`allow_expired=True`) and its Fulcio store
  from every CA's certificates, never comparing the bundle's signed times with a log key's
  or a CA's `validFor`. Here every time that vouches for the entry (its SET-signed integrated
  time, else each verified RFC 3161 time) must fall inside the bound log key's `validFor`,
  and every established signing time inside the `validFor` of a CA whose certificate issued
  the leaf. TSA windows are already checked by sigstore-python (`_verify_signed_timestamp`:
  start <= genTime < end, made closed by verify.py) and are not checked again; CT log
  windows are not checked (sigstore-python does not, and neither does this module).

Windows are closed intervals, [start, end] (protobuf-specs TimeRange), judged against signed
times only — never the wall clock (decision 3): an expired key still verifies old entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from stella_trust._internal.records import Record, record
from stella_trust._internal.sigstore.errors import BundleVerificationError, Check
from stella_trust._internal.sigstore.signednote import parse_checkpoint_text, parse_note
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError

if TYPE_CHECKING:
    from sigstore_models.rekor.v1 import TransparencyLogEntry as EntryModel
    from sigstore_models.trustroot.v1 import TransparencyLogInstance

LOG_HINT = (
    "the bundle's log entry is not bound to a log of this trust the way it claims; do not use the artifact"
)
CA_HINT = "the signing certificate's authority was not valid at the signing time; do not use the artifact"


@record
class BoundEntry(Record):
    """A log entry as the trust and the signed data fix it."""

    log: TransparencyLogInstance
    log_id: str  # hex, the trust's
    index: int  # the inclusion proof's, proved against the signed root
    tree_size: int  # the checkpoint's, signed
    integrated_time: datetime | None  # SET-signed by this log's key, or None (Rekor v2)


def bind_entries(tlogs: Sequence[TransparencyLogInstance], entries: Iterable[EntryModel]) -> list[BoundEntry]:
    """Each entry bound to the one log of the trust whose key verifies it (see the module
    docstring); BundleVerificationError ("log inclusion") when none does, when the bundle names
    another log, or when its unsigned index or size contradicts the signed ones."""
    return [_bind(tlogs, entry) for entry in entries]


def _bind(tlogs: Sequence[TransparencyLogInstance], entry: EntryModel) -> BoundEntry:
    named = entry.log_id.key_id
    # The log the bundle names is tried first: when its key verifies the entry it is the one
    # bound, whatever the other keys would say, so they are not tried (issue 24: one entry
    # verification per bundle instead of one per log of the trust). Otherwise every other key
    # is tried, for the refusal's words: the outcome is that of trying them all, in order.
    log = next((tlog for tlog in tlogs if tlog.log_id.key_id == named and _verified_by(entry, tlog)), None)
    if log is None:
        signers = [tlog for tlog in tlogs if tlog.log_id.key_id != named and _verified_by(entry, tlog)]
        if not signers:
            _refuse("log inclusion", "no transparency log key in the trust verifies the entry's checkpoint")
        signer = signers[0]
        held = any(tlog.log_id.key_id == named for tlog in tlogs)
        _refuse(
            "log inclusion",
            f"the entry names log {named.hex()[:16]}…"
            + ("" if held else ", which the trust does not hold,")
            + f" but it is signed by the key of log {signer.log_id.key_id.hex()[:16]}… ({signer.base_url})",
        )
    proof = entry.inclusion_proof
    if proof.checkpoint is None:  # sigstore-python requires one; _verified_by failed without it
        _refuse("log inclusion", "the entry's inclusion proof has no checkpoint")
    has_set = entry.inclusion_promise is not None and bool(entry.integrated_time)
    if not has_set and int(entry.log_index) != int(proof.log_index):
        _refuse(
            "log inclusion",
            f"the entry's logIndex {entry.log_index} is not its inclusion proof's index {proof.log_index}",
        )
    try:
        signed = parse_checkpoint_text(parse_note(proof.checkpoint.envelope).text)
    except TransparencyLogError as exc:
        _refuse("log inclusion", exc.message)
    if int(proof.tree_size) != signed.size:
        _refuse(
            "log inclusion",
            f"the inclusion proof's tree size {proof.tree_size} is not its signed checkpoint's {signed.size}",
        )
    stamped = entry.integrated_time if has_set else None  # only a SET signs it
    integrated = datetime.fromtimestamp(stamped, tz=UTC) if stamped is not None else None
    return BoundEntry(log, named.hex(), int(proof.log_index), signed.size, integrated)


def _verified_by(entry: EntryModel, tlog: TransparencyLogInstance) -> bool:
    """sigstore-python's own entry verification with a keyring holding this one log key."""
    from sigstore.models import TransparencyLogEntry

    from stella_trust._internal.sigstore._compat_sigstore import verify_entry_with_key

    try:
        verify_entry_with_key(TransparencyLogEntry(entry), tlog.public_key)
    except Exception:  # VerificationError, InvalidBundle, or a key it cannot load: not this log
        return False
    return True


def check_log_windows(bound: Iterable[BoundEntry], tsa_times: Sequence[datetime]) -> None:
    """The times vouching for each entry inside its log key's validFor: the integrated time
    its log signed (SET) when it has one, else every verified RFC 3161 time."""
    for entry in bound:
        times = [entry.integrated_time] if entry.integrated_time is not None else list(tsa_times)
        window = entry.log.public_key.valid_for
        label = f"log {entry.log_id[:16]}… ({entry.log.base_url}) key"
        for moment in times:
            if not _inside(window, moment):
                _refuse(
                    "log inclusion",
                    f"entry {entry.index} was {'integrated' if entry.integrated_time else 'timestamped'} at "
                    f"{_iso(moment)}, outside the validity of its {label}: {_span(window)}",
                )


def check_ca_window(
    leaf: Any, authorities: Sequence[Any], times: Sequence[datetime], known_issuers: Sequence[Any] = ()
) -> None:
    """Each signing time inside the validFor of a trusted CA whose certificate issued `leaf`
    (cryptography's `verify_directly_issued_by`; sigstore-python already verified the chain).

    `known_issuers`: certificates cryptography's chain builder, during sigstore-python's own
    verification of this leaf, used as its issuer (it verified the leaf's signature with each).
    Every CA holding one of them byte for byte is a CA whose certificate issued the leaf, so
    when those CAs' windows hold every time, the answer below would be the same and is given
    without verifying the leaf's signature again (issue 24: ~0.75 ms a bundle). Anything else
    (no issuer known, or a time none of them covers) gets the whole check below: a refusal is
    always its words, and a CA holding another certificate that issued the leaf still counts."""
    if known_issuers and _covered_by(authorities, known_issuers, times):
        return
    issuers = [authority for authority in authorities if _issued_leaf(authority, leaf)]
    for moment in times:
        if not any(_inside(authority.valid_for, moment) for authority in issuers):
            spans = "; ".join(_span(authority.valid_for) for authority in issuers) or "none issued it"
            _refuse(
                "chain",
                f"signing time {_iso(moment)} is outside the validity of the certificate authority "
                f"that issued the signing certificate ({spans})",
            )


def _covered_by(authorities: Sequence[Any], known_issuers: Sequence[Any], times: Sequence[datetime]) -> bool:
    """Whether the CAs holding one of `known_issuers` (DER, byte for byte) cover every time."""
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        known = {issuer.public_bytes(Encoding.DER) for issuer in known_issuers}
    except (AttributeError, TypeError, ValueError):  # not a certificate: the whole check decides
        return False
    holders = [
        authority
        for authority in authorities
        if any(raw.raw_bytes in known for raw in authority.cert_chain.certificates)
    ]
    return bool(holders) and all(any(_inside(a.valid_for, moment) for a in holders) for moment in times)


def _issued_leaf(authority: Any, leaf: Any) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509 import load_der_x509_certificate

    for raw in authority.cert_chain.certificates:
        try:
            leaf.verify_directly_issued_by(load_der_x509_certificate(raw.raw_bytes))
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _inside(window: Any, moment: datetime) -> bool:
    """protobuf-specs TimeRange: closed, [start, end]; no window or no end is open-ended."""
    if window is None:
        return True
    if window.start is not None and moment < window.start:
        return False
    return window.end is None or moment <= window.end


def _span(window: Any) -> str:
    if window is None:
        return "no window"
    return f"{_iso(window.start) if window.start else '…'} to {_iso(window.end) if window.end else '…'}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refuse(check: Check, detail: str) -> NoReturn:
    hint = LOG_HINT if check == "log inclusion" else CA_HINT
    raise BundleVerificationError(check, detail, hint=hint)
