"""Errors of the Sigstore layer, in the project's one hierarchy (message, hint, exit code).

Separate classes let callers tell "the input could not be read" (refused before any
cryptography ran) from "the bundle was read and a named check failed"; both exit 1
because the operation failed, not the trust (exit 3 is the trust view's to raise).
"""

from __future__ import annotations

from typing import Literal

from stella_trust.errors import StellaError

Check = Literal["identity", "digest", "signature", "log inclusion", "SCT", "timestamp", "chain"]


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


def _one_line(text: str) -> str:
    """Library messages may span lines; a user sees exactly one."""
    return " ".join(text.split())
