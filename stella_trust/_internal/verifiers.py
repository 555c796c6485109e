"""What Sigstore verifiers consume, from verified trust only (docs/design.md, decision 7).

`trusted_root.json` for cosign (`--trusted-root`) and sigstore-go, the ClientTrustConfig
for sigstore-python (`--trust-config`), and `verify_bundle` for this host's own offline
verification. Every entry point refuses stale trust; the bytes always come from a
TrustView (re-verified from the anchor) or from a file the caller names explicitly.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Literal

from stella_trust._internal.sigstore.errors import BundleRefusedError, BundleVerificationError
from stella_trust._internal.sigstore.exports import client_trust_config
from stella_trust._internal.sigstore.instance import foreign_log_ids
from stella_trust._internal.sigstore.policy import IdentityPolicy, KeyPolicy, Policy
from stella_trust._internal.sigstore.trusted_root import parse_trusted_root
from stella_trust._internal.sigstore.verify import MAX_BUNDLE_BYTES, VerificationOutcome
from stella_trust._internal.sigstore.verify import verify_bundle as verify_with_root
from stella_trust._internal.timefmt import iso, utcnow
from stella_trust.errors import StaleTrustError, StellaError, UsageError
from stella_trust.view import TrustView

ExportFormat = Literal["trusted-root", "client-trust-config"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("trusted-root", "client-trust-config")
DIGEST_PREFIX = "sha256:"
MAX_INPUT_BYTES = MAX_BUNDLE_BYTES  # bundles, trusted roots and keys are small documents
MAX_KEYED_ARTIFACT_BYTES = 1 << 30  # managed-key signatures need the artifact in memory


def require_usable(view: TrustView) -> TrustView:
    """Stale trust is refused to every consumer (decision 3); a view opened while fresh and
    kept by a long-running attestor turns stale by the clock, not by when it was built."""
    if not view.usable or max(utcnow(), view.at) >= view.freshness.stale_after:
        raise StaleTrustError(
            f"Trust is stale: signed metadata expired at {iso(view.freshness.expires)} "
            f"and the grace period ended at {iso(view.freshness.stale_after)}"
        )
    return view


def trust_file(view: TrustView, fmt: str) -> bytes:
    """The view's trust as `trusted_root.json` or a sigstore-python ClientTrustConfig."""
    require_usable(view)
    if fmt == "trusted-root":
        return view.trusted_root_json
    if fmt == "client-trust-config":
        return client_trust_config(view.trusted_root_json, view.signing_config_json)
    raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")


def make_policy(
    *,
    identity: str | None = None,
    identity_regexp: str | None = None,
    issuer: str | None = None,
    issuer_regexp: str | None = None,
    key_pem: bytes | None = None,
) -> Policy:
    """Who must have signed: a managed key, or a certificate identity and OIDC issuer."""
    if key_pem is not None:
        if any(v is not None for v in (identity, identity_regexp, issuer, issuer_regexp)):
            raise UsageError("--key cannot be combined with certificate identity or issuer options")
        return KeyPolicy(public_key_pem=key_pem)
    if identity is None and identity_regexp is None:
        raise UsageError(
            "say who must have signed: --certificate-identity (or -regexp) with "
            "--certificate-oidc-issuer (or -regexp), or --key PEM"
        )
    return IdentityPolicy(
        identity=identity, identity_regexp=identity_regexp, issuer=issuer, issuer_regexp=issuer_regexp
    )


def verify_bundle(
    view: TrustView,
    bundle: bytes,
    artifact: bytes | str,
    *,
    identity: str | None = None,
    identity_regexp: str | None = None,
    issuer: str | None = None,
    issuer_regexp: str | None = None,
    key_pem: bytes | None = None,
) -> VerificationOutcome:
    """Verify a Sigstore bundle offline with the trust of an open `TrustView`.

    `artifact` is the artifact's bytes or `"sha256:<hex>"`. Raises StaleTrustError for
    stale trust and BundleVerificationError (its `check` names identity, digest, signature,
    log inclusion, SCT, timestamp or chain) when the bundle does not verify.
    """
    policy = make_policy(
        identity=identity,
        identity_regexp=identity_regexp,
        issuer=issuer,
        issuer_regexp=issuer_regexp,
        key_pem=key_pem,
    )
    return verify_with_trust(require_usable(view).trusted_root_json, bundle, artifact, policy)


def verify_with_trust(
    trusted_root_json: bytes, bundle: bytes, artifact: bytes | str, policy: Policy
) -> VerificationOutcome:
    """sigstore-python's verification with this trust; a refusal of a bundle signed on
    another Sigstore instance says so (host state "bundle from another instance")."""
    try:
        return verify_with_root(trusted_root_json, bundle, artifact, policy)
    except BundleVerificationError as exc:
        raise _another_instance(trusted_root_json, bundle) or exc from None


def _another_instance(trusted_root_json: bytes, bundle: bytes) -> BundleVerificationError | None:
    """The bundle's log entries name only logs this trust does not hold: another instance."""
    try:
        logs = parse_trusted_root(trusted_root_json).transparency_logs
    except StellaError:
        return None
    foreign = foreign_log_ids(bundle, (log.log_id for log in logs))
    if not foreign:
        return None
    held = ", ".join(sorted({log.base_url for log in logs})) or "none"
    return BundleVerificationError(
        "log inclusion",
        f"the bundle was signed on another Sigstore instance: its log entry names log "
        f"{foreign[0][:16]}…, which this trust does not hold (it holds {held})",
        hint="verify it with the trust of the instance that signed it: "
        "`trust verify --trusted-root TRUSTED_ROOT.json ...`",
    )


def read_input(path: Path, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A regular file of at most `limit` bytes, or one clear line (never /dev/zero forever)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{what} {path} is not a regular file")
        if info.st_size > limit:
            raise BundleRefusedError(f"{what} {path} is {info.st_size} bytes, above the {limit}-byte limit")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise StellaError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise BundleRefusedError(f"{what} {path} grew above the {limit}-byte limit while being read")
    return data


def artifact_input(value: str, *, need_bytes: bool) -> bytes | str:
    """The artifact argument: a well-formed `sha256:<64 hex>` that is not a file on disk is a
    digest (sigstore-conformance's rule, and cosign's habit); anything else is a path, hashed
    as a stream (an artifact may be gigabytes). Managed-key bundles need the bytes themselves
    (`need_bytes`): a signature over the message, not over a digest."""
    hex_part = value.removeprefix(DIGEST_PREFIX)
    if (
        value.startswith(DIGEST_PREFIX)
        and len(hex_part) == 64
        and all(c in "0123456789abcdefABCDEF" for c in hex_part)
        and not Path(value).exists()
    ):
        return value
    path = Path(value)
    if need_bytes:
        return read_input(path, "artifact", MAX_KEYED_ARTIFACT_BYTES)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise UsageError(f"artifact {path} is not a regular file")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise StellaError(f"cannot read artifact {path}: {exc.strerror or exc}") from None
    return DIGEST_PREFIX + digest.hexdigest()
