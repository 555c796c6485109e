"""Every private sigstore-python (4.5) attribute stella-trust uses, in one place.

sigstore-python's public API verifies a bundle as a whole. Four things we need have no
public door: the protobuf models behind its wrappers (`_inner`: the entry's log ID, kind
and proof; a TSA's window), the trusted root a `Verifier` holds, an entry verification
against one given keyring (`TransparencyLogEntry._verify`: inclusion proof, checkpoint,
SET), and its signed-timestamp and time-establishing steps (a managed-key bundle and the
Rekor v1 `intoto` entry kind reuse them, so that verification stays sigstore-python's own).
`REQUIRED` lists each attribute; `missing()` says which an installed sigstore-python lacks,
and a unit test fails loudly on an upgrade that renames one, instead of a verification
failing obscurely later.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from sigstore.models import Bundle, TransparencyLogEntry
    from sigstore.verify import Verifier

# (module, attribute path) of the classes and functions this adapter relies on
REQUIRED: tuple[tuple[str, str], ...] = (
    ("sigstore.models", "Bundle._dsse_envelope"),
    ("sigstore.models", "TransparencyLogEntry._verify"),
    ("sigstore.verify.verifier", "Verifier._establish_time"),
    ("sigstore.verify.verifier", "Verifier._verify_signed_timestamp"),
    ("sigstore.verify.verifier", "Verifier._verify_timestamp_authority"),
    ("sigstore.verify.verifier", "Verifier._verify_common_signing_cert"),
    ("sigstore.verify.verifier", "Verifier._verify_chain_at_time"),
    ("sigstore.dsse", "_verify"),
    ("sigstore._internal.trust", "Keyring"),
    ("sigstore._internal.trust", "RekorKeyring"),
    ("sigstore._internal.trust", "KeyringPurpose"),
    ("sigstore._internal.timestamp", "TimestampSource"),
    ("sigstore._internal.timestamp", "TimestampVerificationResult"),
)
# attributes sigstore-python sets on instances (checked on real objects by the unit test)
INSTANCE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("Bundle", "_inner"),
    ("TransparencyLogEntry", "_inner"),
    ("TrustedRoot", "_inner"),
    ("Verifier", "_trusted_root"),
)


def missing(instances: dict[str, object] | None = None) -> list[str]:
    """What of REQUIRED (and of INSTANCE_ATTRIBUTES, given sample `instances` by class name)
    the installed sigstore-python lacks."""
    import importlib

    absent = []
    for module_name, path in REQUIRED:
        try:
            node: Any = importlib.import_module(module_name)
        except ImportError:
            absent.append(f"{module_name} (module)")
            continue
        for part in path.split("."):
            if not hasattr(node, part):
                absent.append(f"{module_name}.{path}")
                break
            node = getattr(node, part)
    for class_name, attribute in INSTANCE_ATTRIBUTES:
        sample = (instances or {}).get(class_name)
        if sample is not None and not hasattr(sample, attribute):
            absent.append(f"{class_name}().{attribute}")
    return absent


# ---- the models behind the wrappers --------------------------------------------------------------
def model(wrapper: Any) -> Any:
    """The sigstore_models object a sigstore-python wrapper (Bundle, TransparencyLogEntry,
    TrustedRoot, Envelope) holds."""
    return wrapper._inner


def dsse_envelope(bundle: Bundle) -> Any:
    """The bundle's DSSE envelope (None for a message signature): sigstore keeps it private."""
    return bundle._dsse_envelope


def trusted_root_of(verifier: Verifier) -> Any:
    """The `sigstore.models.TrustedRoot` a Verifier was built with."""
    return verifier._trusted_root


# ---- sigstore-python's own verification steps ------------------------------------------------------
def verify_entry_with_trust(entry: TransparencyLogEntry, verifier: Verifier) -> None:
    """Inclusion proof, checkpoint and SET against every Rekor key the verifier trusts."""
    from sigstore._internal.trust import KeyringPurpose

    entry._verify(verifier._trusted_root.rekor_keyring(KeyringPurpose.VERIFY))


def verify_entry_with_key(entry: TransparencyLogEntry, public_key: Any) -> None:
    """The same, with a keyring holding this one log key (which log verified an entry)."""
    from sigstore._internal.trust import Keyring, RekorKeyring

    entry._verify(RekorKeyring(Keyring([public_key])))


def verify_signed_timestamp(verifier: Verifier, response: Any, signature: bytes) -> datetime | None:
    """An RFC 3161 timestamp verified against the verifier's TSAs; its time, or None."""
    result = verifier._verify_signed_timestamp(response, signature)
    return None if result is None else result.time


def established_times(verifier: Verifier, bundle: Bundle) -> list[tuple[bool, datetime]]:
    """(from a timestamp authority, time) of every time sigstore-python established."""
    return as_established(verifier._establish_time(bundle))


def as_established(results: list[Any]) -> list[tuple[bool, datetime]]:
    """(from a timestamp authority, time) of sigstore's TimestampVerificationResults."""
    from sigstore._internal.timestamp import TimestampSource

    return [(result.source == TimestampSource.TIMESTAMP_AUTHORITY, result.time) for result in results]


def dsse_verify(key: EllipticCurvePublicKey, envelope: Any) -> None:
    """sigstore's own DSSE signature check (private), so the in-toto entry kind is
    verified by the same code as every other DSSE bundle."""
    from sigstore import dsse

    dsse._verify(key, envelope)


def transparency_time(time: datetime) -> Any:
    """A TimestampVerificationResult for a SET-bound integrated time."""
    from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult

    return TimestampVerificationResult(source=TimestampSource.TRANSPARENCY_SERVICE, time=time)


def verifier_base() -> type[Verifier]:
    """sigstore-python's Verifier, whose private steps `IntotoVerifier` extends: its overrides
    (`_establish_time`, `_verify_chain_at_time`, and calls to `_verify_common_signing_cert`,
    `_verify_timestamp_authority`) are listed in REQUIRED."""
    from sigstore.verify import Verifier

    return Verifier


def establish_time_of_base(verifier: Verifier, bundle: Bundle) -> Any:
    """The base Verifier's time establishment, for the subclass that extends it."""
    return verifier_base()._establish_time(verifier, bundle)


def verify_chain_at_time_of_base(verifier: Verifier, certificate: Any, timestamp_result: Any) -> list[Any]:
    """The base Verifier's chain building at one established time: the chain cryptography's
    verifier built and checked, without the leaf (its first certificate issued the leaf)."""
    return list(verifier_base()._verify_chain_at_time(verifier, certificate, timestamp_result))


def verify_timestamp_authority(verifier: Verifier, bundle: Bundle) -> Any:
    """sigstore's RFC 3161 checks for a bundle (private), reused unchanged."""
    return verifier._verify_timestamp_authority(bundle)


def verify_common_signing_cert(verifier: Verifier, bundle: Bundle, policy: Any) -> None:
    """sigstore's certificate chain, SCT and policy checks (private), reused unchanged."""
    verifier._verify_common_signing_cert(bundle, policy)
