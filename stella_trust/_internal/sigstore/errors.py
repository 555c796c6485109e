"""Errors of the Sigstore layer, in the project's one hierarchy (message, hint, exit code).

Separate classes let callers tell "the input could not be read" (refused before any
cryptography ran) from "the bundle was read and a named check failed"; both exit 1
because the operation failed, not the trust (exit 3 is the trust view's to raise).
"""

from __future__ import annotations

from typing import Literal

from stella_trust.errors import StellaError

Check = Literal["identity", "digest", "signature", "log inclusion", "SCT", "timestamp", "chain"]

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


class TrustMaterialError(StellaError):
    """A trusted_root.json / signing config / client trust config is malformed."""

    default_hint = "the named file must be Sigstore trust material that sigstore-python can load"

    def __init__(self, target: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{target}: {_one_line(problem)}", hint)
        self.target = target


class BundleRefusedError(StellaError):
    """The bundle was refused before verification: not JSON, unknown media type, too large, malformed."""

    default_hint = "pass a Sigstore bundle (.sigstore.json) as produced by cosign or sigstore-python"


class BundleVerificationError(StellaError):
    """The bundle was read, and the named check failed: the artifact must not be trusted."""

    default_hint = "the artifact is not signed as the policy requires; do not use it"

    def __init__(self, check: Check, detail: str, hint: str | None = None) -> None:
        super().__init__(f"verification failed: {check}: {_one_line(detail)}", hint)
        self.check: Check = check


def classify(message: str) -> Check:
    """Which check a sigstore-python failure message is about ("signature" when none is named)."""
    lowered = message.lower()
    for check, words in _CHECK_WORDS:
        if any(word in lowered for word in words):
            return check
    return "signature"


def _one_line(text: str) -> str:
    """Library messages may span lines; a user sees exactly one."""
    return " ".join(text.split())
