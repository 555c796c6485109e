"""`trust verify`'s extra check against sealed log state (issue 14).

sigstore-python proves a bundle's entry is in *a* tree the log signed. With a sealed state
of that log (sealedlogs.py) the host can also check that tree is the one everyone saw: the
entry's leaf (RFC 6962 leaf hash of its canonicalized body) at its index in the sealed tree
when the sealed tiles cover it, or else the bundle's checkpoint root equal to the sealed
tree's root at that size when the tiles can compute it. A contradiction is a refusal (the
log showed two histories); what could not be checked is said, never passed over silently.
The bundle is read with `sigstore_models` (the models sigstore-python itself loads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stella_trust._internal.sigstore.merkle import leaf_hash
from stella_trust._internal.sigstore.sealedlogs import SealedLog, origin_of
from stella_trust._internal.sigstore.tiles import check_leaf, check_root


@dataclass(frozen=True)
class EntryFacts:
    """What a bundle's log entry claims: where its leaf is, and the tree its proof is for."""

    log_id: str  # hex
    log_index: int
    leaf: bytes
    tree_size: int | None
    root_hash: bytes | None


def entry_facts(bundle: bytes) -> list[EntryFacts]:
    """The log entries of a Sigstore bundle (already verified by sigstore-python)."""
    from sigstore_models.bundle.v1 import Bundle

    model = Bundle.from_json(bundle)
    facts = []
    for entry in model.verification_material.tlog_entries or []:
        proof = entry.inclusion_proof
        facts.append(
            EntryFacts(
                log_id=entry.log_id.key_id.hex(),
                log_index=int(entry.log_index),
                leaf=leaf_hash(entry.canonicalized_body),
                tree_size=int(proof.tree_size) if proof is not None else None,
                root_hash=proof.root_hash if proof is not None else None,
            )
        )
    return facts


def check_entries(facts: list[EntryFacts], sealed: Mapping[str, SealedLog]) -> list[str]:
    """One sentence per entry saying which check was made (or why none could be); raises
    TransparencyLogError when the sealed log contradicts the bundle."""
    said = []
    for fact in facts:
        state = sealed.get(fact.log_id)
        if state is None:
            said.append(f"log {fact.log_id[:16]}…: no sealed state on this host; sealed-log check not made")
            continue
        name = origin_of(state.log.base_url)
        size = state.checkpoint.size
        where = f"{name} entry {fact.log_index}"
        if check_leaf(state.tiles, fact.leaf, fact.log_index, what=where):
            said.append(f"{name}: entry {fact.log_index} is at its index in the sealed tree (size {size})")
            if fact.tree_size is not None and fact.root_hash is not None:
                check_root(state.tiles, fact.tree_size, fact.root_hash, what=f"{name} bundle checkpoint")
            continue
        if (
            fact.tree_size is not None
            and fact.root_hash is not None
            and check_root(state.tiles, fact.tree_size, fact.root_hash, what=f"{name} bundle checkpoint")
        ):
            said.append(
                f"{name}: the bundle's checkpoint (size {fact.tree_size}) is consistent with the "
                f"sealed tree (size {size})"
            )
            continue
        reason = (
            f"its tree (size {fact.tree_size}) is newer than the sealed one (size {size})"
            if fact.tree_size is not None and fact.tree_size > size
            else f"the sealed tiles (last {state.depth} of {size}) do not cover entry {fact.log_index}"
        )
        said.append(f"{name}: sealed-log check not made: {reason}")
    return said
