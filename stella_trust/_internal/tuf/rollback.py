"""Rollback protection across every path (docs/design.md, decision 4).

python-tuf refuses lower versions within one Updater's trusted set, but `sync --force`
starts afresh and a bundle import builds from nothing, so the versions a host already
committed are checked here again, against two floors: the generation being replaced
(if it still verifies) and the floor recorded in state.json at the last commit.
"""

from __future__ import annotations

from tuf.api.metadata import Root, Snapshot, Timestamp

from stella_trust._internal.cachestate import Floor
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.store import Generation
from stella_trust._internal.tuf.offline import VerifiedMetadata, verify_metadata
from stella_trust.errors import RollbackError, StellaError


def rollback_violations(floor: Floor, new: VerifiedMetadata) -> list[str]:
    """Roles whose version went below the floor, skipping roles whose keys were rotated.

    A rotated timestamp or snapshot key resets both (TUF spec 5.3.11): that is how a
    repository recovers from a fast-forward attack, which a strict floor would block.
    """
    roles = new.root.signed.roles
    rotated = {
        role
        for role, entry in floor.items()
        if role != Root.type and role in roles and tuple(sorted(roles[role].keyids)) != entry.keyids
    }
    if rotated & {Timestamp.type, Snapshot.type}:
        rotated |= {Timestamp.type, Snapshot.type}
    problems = []
    for role, version in new.versions.items():
        if role not in floor or role in rotated:
            continue
        held = floor[role].version
        if version < held:
            problems.append(f"{role} v{version} < v{held}")
    return problems


def refuse_rollback(
    base: Generation | None,
    anchor: bytes,
    floor: Floor,
    new: VerifiedMetadata,
    memo: VerificationMemo | None = None,
) -> None:
    """Raise RollbackError if `new` lowers any version the host held or committed."""
    lower = rollback_violations(floor, new)
    if base is not None:
        try:
            held = verify_metadata(base.metadata_dir, anchor, memo=memo).floor()
        except StellaError:
            held = {}
        lower += [v for v in rollback_violations(held, new) if v not in lower]
    if lower:
        raise RollbackError(f"Rollback refused: {', '.join(lower)}")
