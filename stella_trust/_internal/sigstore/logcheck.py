"""`trust verify`'s extra check against sealed log state (decision 15), on authenticated facts only.

sigstore-python proves a bundle's entry is in *a* tree the log signed. With a sealed state
of that log (sealedlogs.py) the host can also check that tree is the one everyone saw: the
entry's leaf (RFC 6962 leaf hash of its canonicalized body) at its index in the sealed tree
when the sealed tiles cover it, and the bundle's checkpoint root equal to the sealed tree's
root at that size when the tiles can compute it. When they cannot (the bundle's tree is
larger than the sealed one, or older than the sealed tiles reach), every complete subtree
the inclusion proof carries or computes — the entry's ancestors and their siblings
(RFC 9162 §2.1.3) — that the sealed tiles also hold at any level (c2sp.org/tlog-tiles) must
have the same hash: one that differs is "forked history" with both roots, as on import. A
contradiction is a refusal (the log showed two histories); what was checked is said, and
what could not be checked is said, never passed over silently.

Nothing here is read from an unsigned bundle field: a bundle chooses those freely. A bundle's `logId`, the
entry's `logIndex` and the proof's `treeSize` are claims: the held state is the one whose
log key *verifies* the entry's checkpoint (signednote.signed_by, whatever log ID or key
hint the bundle names), the tree size and root are the checkpoint's signed ones, and the
index is the inclusion proof's (the one the proof was verified for against that signed
root); the bundle's `logId`, and the entry's own `logIndex` unless a SET signs it, must agree
with them or the entry is refused. verify.py binds the entry to its log the same way before this runs (it also
refuses an entry naming a log the trust does not hold). The bundle is read with
`sigstore_models` (the models sigstore-python itself loads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from stella_trust._internal.sigstore.merkle import leaf_hash
from stella_trust._internal.sigstore.signednote import (
    Checkpoint,
    load_log_key,
    parse_checkpoint_text,
    parse_note,
    signed_by,
)
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError

if TYPE_CHECKING:
    from stella_trust._internal.sigstore.merkle import Subtree
    from stella_trust._internal.sigstore.sealedlogs import SealedLog

# sealedlogs.py and tiles.py are imported where a held state is compared, not at import: a
# host without sealed log state (most hosts) never loads them during `trust verify`.


class EntryFacts(NamedTuple):
    """A bundle's log entry as carried: claims, to be checked against signed data."""

    log_id: str  # hex, as the bundle names it (a claim)
    log_index: int  # the inclusion proof's index: proved against the checkpoint's signed root
    entry_index: int  # the entry's own logIndex: must equal log_index unless a SET signs it
    index_signed: bool  # a SET signs entry_index (Rekor v1: a global index across shards)
    leaf: bytes
    proof_size: int | None  # the proof's treeSize (a claim): must equal the checkpoint's
    checkpoint: bytes | None  # the signed note the proof's root is checked against
    proof: tuple[bytes, ...] | None = None  # the proof's hashes: used only once verified here


def entry_facts(bundle: bytes) -> list[EntryFacts]:
    """The log entries of a Sigstore bundle (already verified by sigstore-python)."""
    from sigstore_models.bundle.v1 import Bundle

    model = Bundle.from_json(bundle)
    facts = []
    for entry in model.verification_material.tlog_entries or []:
        proof = entry.inclusion_proof
        envelope = proof.checkpoint.envelope if proof is not None and proof.checkpoint else None
        facts.append(
            EntryFacts(
                log_id=entry.log_id.key_id.hex(),
                log_index=int(proof.log_index) if proof is not None else int(entry.log_index),
                entry_index=int(entry.log_index),
                index_signed=entry.inclusion_promise is not None and bool(entry.integrated_time),
                leaf=leaf_hash(entry.canonicalized_body),
                proof_size=int(proof.tree_size) if proof is not None else None,
                checkpoint=envelope.encode() if envelope is not None else None,
                proof=tuple(proof.hashes) if proof is not None else None,
            )
        )
    return facts


def signer_of(fact: EntryFacts, sealed: Mapping[str, SealedLog]) -> SealedLog | None:
    """The held state whose log key verifies the entry's checkpoint (never looked up by the
    bundle's `logId`), or None when no held state's key signed it."""
    if fact.checkpoint is None or not sealed:
        return None
    from stella_trust._internal.sigstore.sealedlogs import log_key_der

    note = parse_note(fact.checkpoint, where="bundle checkpoint")
    for state in sealed.values():
        if signed_by(note, load_log_key(log_key_der(state.log))):
            return state
    return None


def check_entries(facts: list[EntryFacts], sealed: Mapping[str, SealedLog]) -> list[str]:
    """One sentence per entry saying which check was made (or why none could be); raises
    TransparencyLogError when the sealed log contradicts the bundle, or when the bundle's
    unsigned fields contradict its signed ones."""
    said = []
    for fact in facts:
        if not fact.index_signed and fact.entry_index != fact.log_index:
            raise TransparencyLogError(
                f"entry {fact.entry_index}",
                f"the entry's logIndex {fact.entry_index} is not its inclusion proof's "
                f"index {fact.log_index}",
            )
        state = signer_of(fact, sealed)
        if state is None:
            said.append(f"log {fact.log_id[:16]}…: no sealed state on this host; sealed-log check not made")
            continue
        said.append(_check_one(fact, state))
    return said


def _check_one(fact: EntryFacts, state: SealedLog) -> str:
    from stella_trust._internal.sigstore.tiles import check_leaf, check_root

    name, size = state.name, state.checkpoint.size
    assert fact.checkpoint is not None  # signer_of found the key that signed it
    if fact.log_id != state.log_id:
        raise TransparencyLogError(
            f"{name} entry {fact.log_index}",
            f"the bundle names log {fact.log_id[:16]}… but its checkpoint is signed by the key of log "
            f"{state.log_id[:16]}…",
        )
    checkpoint = parse_checkpoint_text(
        parse_note(fact.checkpoint, where="bundle checkpoint").text, where=f"{name} bundle checkpoint"
    )
    if checkpoint.origin != name:
        raise TransparencyLogError(
            f"{name} entry {fact.log_index}",
            f"its checkpoint, signed by this log's key, names another tree ({checkpoint.origin!r})",
        )
    if fact.proof_size is not None and fact.proof_size != checkpoint.size:
        raise TransparencyLogError(
            f"{name} entry {fact.log_index}",
            f"the inclusion proof's tree size {fact.proof_size} is not its signed "
            f"checkpoint's {checkpoint.size}",
        )
    where = f"{name} entry {fact.log_index}"
    leaf_held = check_leaf(state.tiles, fact.leaf, fact.log_index, what=where)
    if check_root(state.tiles, checkpoint.size, checkpoint.root_hash, what=f"{name} bundle checkpoint"):
        if leaf_held:
            return f"{name}: entry {fact.log_index} is at its index in the sealed tree (size {size})"
        return (
            f"{name}: the bundle's checkpoint (size {checkpoint.size}) is consistent with the "
            f"sealed tree (size {size})"
        )
    shared = _shared_with_sealed(fact, checkpoint, state)
    agreed = f"agrees with it on entries {_covered(shared)} ({_count(shared)} compared)"
    tree = f"its tree (size {checkpoint.size})"
    if leaf_held:
        return f"{name}: entry {fact.log_index} is at its index in the sealed tree (size {size})" + (
            f"; {tree} {agreed}" if shared else ""
        )
    if any(node.start <= fact.log_index < node.end for node in shared):  # an ancestor of the leaf
        return f"{name}: entry {fact.log_index} is in the sealed tree (size {size}): {tree} {agreed}"
    if checkpoint.size > size:
        reason = f"{tree} is newer than the sealed one (size {size})"
    else:
        reason = f"the sealed tiles (last {state.depth} of {size}) do not cover entry {fact.log_index}"
    if shared:
        said = reason + (" and" if checkpoint.size > size else f"; {tree}")
        return f"{name}: entry {fact.log_index}: {said} {agreed}, the rest is not checked"
    none = "; none of the hashes its inclusion proof gives is sealed" if fact.proof is not None else ""
    return f"{name}: sealed-log check not made: {reason}{none}"


def _shared_with_sealed(fact: EntryFacts, checkpoint: Checkpoint, state: SealedLog) -> list[Subtree]:
    """The proof's complete subtrees the sealed tiles also hold, all agreeing; LogForkError
    ("forked history", both roots) at the first that does not.

    The nodes come from the proof as verified here against the *signed* root, size and the
    proved index (merkle.inclusion_subtrees), never from the bundle's `rootHash`. A complete
    subtree's hash is the same in every tree of the log that holds its leaves (RFC 6962 §2.1),
    so the bundle's tree, however much larger than the sealed one, must agree with every
    sealed hash of one — tiles at any level and the edges (tiles.shared_subtrees) — including
    the entry's own ancestors, which carry a rewritten entry upwards. Agreement on these is
    not a consistency proof (the bundle's tree is never recomputed whole), and is said as such.
    """
    from stella_trust._internal.sigstore.merkle import inclusion_subtrees
    from stella_trust._internal.sigstore.sealedlogs import fork_error
    from stella_trust._internal.sigstore.tiles import shared_subtrees

    if fact.proof is None:
        return []
    nodes = inclusion_subtrees(
        fact.leaf,
        fact.log_index,
        checkpoint.size,
        fact.proof,
        checkpoint.root_hash,
        where=f"{state.name} entry {fact.log_index} inclusion proof",
    )
    shared = shared_subtrees(state.tiles, nodes)
    for node, held in shared:
        if node.hash != held.hash:
            raise fork_error(
                state,
                checkpoint.root_hash,
                checkpoint.size,
                f"they disagree at {held.where} (entries [{node.start}, {node.end})): the sealed tiles "
                f"give {held.hash.hex()}, the entry's inclusion proof {node.hash.hex()}",
                other="the bundle's checkpoint",
            )
    return [node for node, _ in shared]


def _covered(nodes: list[Subtree]) -> str:
    """The entries the agreeing subtrees span, as merged ranges: equal subtree hashes mean
    equal leaves below them (RFC 6962 §2.1, SHA-256 collision resistance)."""
    merged: list[list[int]] = []
    for node in sorted(nodes, key=lambda node: (node.start, node.end)):
        if merged and node.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], node.end)
        else:
            merged.append([node.start, node.end])
    return ", ".join(f"[{start}, {end})" for start, end in merged)


def _count(nodes: list[Subtree]) -> str:
    return f"{len(nodes)} sealed hash{'es' if len(nodes) != 1 else ''}"
