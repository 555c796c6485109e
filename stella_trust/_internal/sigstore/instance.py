"""Which Sigstore instance a bundle came from, for a refusal's words only.

A bundle signed on another Sigstore instance (staging against public-good trust, a private
instance) fails verification on whatever check sigstore-python meets first, often a chain or
timestamp error that says nothing of the cause. When verification has already failed, the
bundle's transparency-log IDs are compared with the logs the trust holds: if none is held,
the refusal says so. This never decides anything: the IDs are unsigned bundle fields, read
only to explain a verification that was refused anyway.
"""

from __future__ import annotations

from collections.abc import Iterable


def foreign_log_ids(bundle: bytes, trusted_log_ids: Iterable[str]) -> list[str]:
    """The bundle's log IDs (hex) when none of them is among `trusted_log_ids`; else []."""
    from sigstore_models.bundle.v1 import Bundle

    try:
        model = Bundle.from_json(bundle)
        named = [entry.log_id.key_id.hex() for entry in model.verification_material.tlog_entries or []]
    except Exception:  # a bundle that does not parse: its own error has been reported already
        return []
    trusted = {log_id.lower() for log_id in trusted_log_ids}
    return named if named and not trusted.intersection(named) else []
