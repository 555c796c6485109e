"""What a successful verification established: the one result both verification paths
(a certificate, a managed key) return, and the public `VerificationOutcome` type."""

from __future__ import annotations

from datetime import datetime

from stella_trust._internal.records import Record, record


@record(kw_only=True)
class VerificationOutcome(Record):
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
