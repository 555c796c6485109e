"""Rollback protection across every path (docs/design.md, decision 4).

python-tuf refuses lower versions within one Updater's trusted set, but `sync --force`
starts afresh and a bundle import builds from nothing, so the versions a host already
committed are checked here again, against two floors: the generation being replaced
(if it still verifies) and the floor recorded in state.json at the last commit.
"""

from __future__ import annotations

from typing import Any

from tuf.api.metadata import Root, Snapshot, Timestamp

from stella_trust._internal.store import Generation
from stella_trust._internal.tuf.offline import VerifiedMetadata, verify_metadata
from stella_trust.errors import CacheVerificationError, RollbackError, StellaError


def _floor_entry(role: str, entry: Any) -> tuple[int, list[str]]:
    """One role's floor as (version, keyids); a malformed entry is refused, not skipped
    (skipping would silently switch the check off)."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("version"), int)
        or isinstance(entry.get("version"), bool)
        or not isinstance(entry.get("keyids"), list)
        or not all(isinstance(k, str) for k in entry["keyids"])
    ):
        raise CacheVerificationError(
            f"state.json: the rollback floor for {role!r} is malformed",
            hint="the cache state was edited on disk; re-initialise the host from the root you "
            "trust (`trust init --force --root ROOT.json ...` resets the cache and its state)",
        )
    return entry["version"], entry["keyids"]


def rollback_violations(floor: dict[str, Any], new: VerifiedMetadata) -> list[str]:
    """Roles whose version went below the floor, skipping roles whose keys were rotated.

    A rotated timestamp or snapshot key resets both (TUF spec 5.3.11): that is how a
    repository recovers from a fast-forward attack, which a strict floor would block.
    """
    if not isinstance(floor, dict):
        raise CacheVerificationError(
            "state.json: the rollback floor is malformed", hint="the cache state was edited on disk"
        )
    entries = {role: _floor_entry(role, entry) for role, entry in floor.items()}
    roles = new.root.signed.roles
    rotated = {
        role
        for role, (_version, keyids) in entries.items()
        if role != Root.type and role in roles and sorted(roles[role].keyids) != keyids
    }
    if rotated & {Timestamp.type, Snapshot.type}:
        rotated |= {Timestamp.type, Snapshot.type}
    problems = []
    for role, version in new.versions.items():
        if role not in entries or role in rotated:
            continue
        held = entries[role][0]
        if version < held:
            problems.append(f"{role} v{version} < v{held}")
    return problems


def refuse_rollback(
    base: Generation | None, anchor: bytes, floor: dict[str, Any], new: VerifiedMetadata
) -> None:
    """Raise RollbackError if `new` lowers any version the host held or committed."""
    lower = rollback_violations(floor, new)
    if base is not None:
        try:
            held = verify_metadata(base.metadata_dir, anchor).floor()
        except StellaError:
            held = {}
        lower += [v for v in rollback_violations(held, new) if v not in lower]
    if lower:
        raise RollbackError(f"Rollback refused: {', '.join(lower)}")
