"""What Sigstore verifiers consume, from verified trust only (docs/design.md, decision 7).

`trusted_root.json` for cosign (`--trusted-root`) and sigstore-go, the ClientTrustConfig
for sigstore-python (`--trust-config`), and `verify_with_trust` for this host's own offline
verification (behind the public `stella_trust.verify_bundle` and `trust verify`, which refuse
stale trust before they call it). The bytes always come from a TrustView (re-verified from the
anchor) or from a file the caller names explicitly.
"""

from __future__ import annotations

from typing import Literal

from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.policy.freshness import require_usable
from stella_trust._internal.sigstore.errors import BundleVerificationError
from stella_trust._internal.sigstore.exports import client_trust_config
from stella_trust._internal.sigstore.instance import foreign_log_ids
from stella_trust._internal.sigstore.signers import Policy
from stella_trust._internal.sigstore.trusted_root import parse_trusted_root
from stella_trust._internal.sigstore.verify import VerificationOutcome
from stella_trust._internal.sigstore.verify import verify_bundle as verify_with_root
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import StellaError, UsageError
from stella_trust.view import TrustView

ExportFormat = Literal["trusted-root", "client-trust-config"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("trusted-root", "client-trust-config")


def trust_file(view: TrustView, fmt: str) -> bytes:
    """The view's trust as `trusted_root.json` or a sigstore-python ClientTrustConfig."""
    require_usable(view, utcnow())
    if fmt == "trusted-root":
        return view.trusted_root_json
    if fmt == "client-trust-config":
        return client_trust_config(view.trusted_root_json, view.signing_config_json)
    raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")


def verify_with_trust(
    trusted_root_json: bytes,
    bundle: bytes,
    artifact: bytes | str,
    policy: Policy,
    *,
    memo: VerificationMemo | None = None,
) -> VerificationOutcome:
    """sigstore-python's verification with this trust; a refusal of a bundle signed on
    another Sigstore instance says so (host state "bundle from another instance"). A refusal
    of the log entry itself (a log ID, index or size not bound to the key that verified it:
    signedfacts.py) keeps its own words: that bundle was edited, not signed elsewhere."""
    try:
        return verify_with_root(trusted_root_json, bundle, artifact, policy, memo=memo)
    except BundleVerificationError as exc:
        if exc.check == "log inclusion":  # the entry itself was judged: its words stand
            raise
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
