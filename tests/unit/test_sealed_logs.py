"""Sealed log state in process (issue 14): reconcile rules, the verify-time check, and the
host's stored state re-verified on every read."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stella_trust._internal.sigstore.logcheck import EntryFacts, check_entries, entry_facts
from stella_trust._internal.sigstore.merkle import leaf_hash
from stella_trust._internal.sigstore.sealedlogs import (
    LogForkError,
    SealedLog,
    accept_carried,
    origin_of,
    read_sealed,
    reconcile,
    tile_logs,
    verify_log_state,
    write_sealed,
)
from stella_trust._internal.sigstore.signednote import ed25519_key_hash, sign_note
from stella_trust._internal.sigstore.tilelayout import tiles_for
from stella_trust._internal.sigstore.tiles import first_disagreement
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust.errors import CacheVerificationError
from stella_trust.sigstore_types import TransparencyLog
from tests.tlog_log import SyntheticLog

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
BASE = "http://127.0.0.1:8080"
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def log_fact(log: SyntheticLog, *, version: int = 2, until: datetime | None = None) -> TransparencyLog:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return TransparencyLog(
        kind="rekor",
        base_url=BASE,
        log_id=ed25519_key_hash(log.origin, log.public_key).hex(),
        key_algorithm="PKIX_ED25519",
        spki_sha256="",
        public_key_pem=log.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        valid_until=until,
        rekor_version=version,
    )


def spki_fact(log: SyntheticLog) -> TransparencyLog:
    """The log as a synthesized trust lists it: log ID = SHA-256 of the key's SPKI (no name)."""
    spki = hashlib.sha256(log.public_key_der).hexdigest()
    return replace(log_fact(log), log_id=spki, spki_sha256=spki)


def files_of(log: SyntheticLog, size: int, depth: int) -> dict[str, bytes]:
    every = log.tiles(size)
    files = {ref.path: every[ref.path] for ref in tiles_for(size, depth)}
    files["checkpoint"] = log.checkpoint(size).encode()
    return files


def state(log: SyntheticLog, size: int, depth: int) -> SealedLog:
    return verify_log_state(log_fact(log), files_of(log, size, depth), "2026-11-21T00:00:00Z")


@pytest.fixture
def log() -> SyntheticLog:
    return SyntheticLog(5000, origin_of(BASE))


def test_origin_is_host_and_port_and_only_active_v2_logs_are_tiled(log: SyntheticLog) -> None:
    assert origin_of("https://log2025-1.rekor.sigstore.dev") == "log2025-1.rekor.sigstore.dev"
    assert origin_of("http://127.0.0.1:8080/") == "127.0.0.1:8080"
    active, v1 = log_fact(log), log_fact(log, version=1)
    retired = log_fact(log, until=datetime(2025, 12, 31, tzinfo=UTC))
    assert tile_logs([active, v1, retired], NOW) == [active]


def test_reconcile_keeps_the_larger_consistent_tree(log: SyntheticLog) -> None:
    small, large = state(log, 4000, 2000), state(log, 5000, 2000)
    assert reconcile(None, small) == (small, None)
    assert reconcile(small, large) == (large, None)  # held root recomputed from the new tiles
    kept, note = reconcile(large, small)  # older but provably consistent: no rollback, no refusal
    assert kept is large and note is not None and "kept the held" in note
    assert reconcile(large, state(log, 5000, 300))[0] is large  # same tree, less depth


def test_growth_replaces_the_held_state_only_when_its_tiles_prove_it(log: SyntheticLog) -> None:
    """Issue 21: "cannot tell" never replaces the held state; the depth the note asks for does."""
    held = state(log, 1000, 100)
    kept, note = reconcile(held, state(log, 5000, 100))
    assert kept is held and note is not None and "cannot be proven" in note
    needed = int(note.split("--depth ")[1].split()[0])
    assert needed == 5000 - 768  # the carried tiles must reach the held tree's level-0 edge tile
    proof = state(log, 5000, needed)
    assert reconcile(held, proof) == (proof, None)
    assert reconcile(held, state(log, 5000, needed - 256))[0] is held  # one tile short


def test_an_older_state_is_kept_out_with_a_note_never_a_refusal(log: SyntheticLog) -> None:
    """Issue 20: an older genuine state must not block a TUF update: held kept, said why."""
    held = state(log, 5000, 100)
    kept, note = reconcile(held, state(log, 1000, 100))
    assert kept is held and note is not None
    assert "older than the held one" in note and "not checked" in note and "kept the held" in note
    kept, note = reconcile(state(log, 5000, 4200), state(log, 1000, 100))
    assert note is not None and "consistent with it" in note


def fork_of(log: SyntheticLog, size: int, rewritten: int) -> SyntheticLog:
    """The same log key and name, one entry rewritten: the log signs another history."""
    return SyntheticLog(
        size, log.origin, log.key, entry=lambda i: b"rewritten" if i == rewritten else b"entry %d" % i
    )


def test_a_fork_is_refused_by_any_hash_both_states_hold(log: SyntheticLog) -> None:
    """Issue 21's reproduction: held 3000; entry 100 rewritten, grown to 3500, depth 10 — the
    growth cannot be proven, but the level-1 edge tiles both hold disagree: forked history,
    both roots named. And every other shape of fork."""
    held = state(log, 3000, 10)
    fork = fork_of(log, 3500, 100)
    with pytest.raises(LogForkError) as refused:
        reconcile(held, state(fork, 3500, 10))
    message = refused.value.message
    assert f"held root {log.root(3000).hex()} (tree size 3000)" in message
    assert f"carried root {fork.root(3500).hex()} (tree size 3500)" in message
    assert "disagree at tile/1/000.p/11 hash 0" in message
    assert refused.value.held_root == log.root(3000) and refused.value.carried_root == fork.root(3500)
    with pytest.raises(
        LogForkError, match=re.escape("disagree at tile/1/000.p/11 hash 0")
    ):  # and the other way round
        reconcile(state(fork, 3500, 10), held)
    with pytest.raises(LogForkError, match=r"two roots for one tree size|disagree"):
        reconcile(state(log, 5000, 100), state(fork_of(log, 5000, 4990), 5000, 100))
    with pytest.raises(
        LogForkError, match=re.escape("disagree at tile/0/019.p/136 hash 126")
    ):  # a level-0 edge
        reconcile(state(log, 5000, 100), state(fork_of(log, 5000, 4990), 5000, 100))
    grown = fork_of(log, 5000, 3100)  # the proof of growth is what holds the differing hashes
    with pytest.raises(LogForkError, match="forked history"):
        reconcile(state(log, 4000, 10), state(grown, 5000, 2000))
    with pytest.raises(LogForkError, match="forked history"):
        reconcile(state(log, 5000, 2000), state(fork_of(log, 4000, 3100), 4000, 10))
    renamed = SyntheticLog(5000, "another.name", log.key)  # a log the trust binds no name to
    held_spki = verify_log_state(spki_fact(log), files_of(log, 5000, 10))
    carried = verify_log_state(spki_fact(log), files_of(renamed, 5000, 10), pinned="another.name")
    with pytest.raises(LogForkError, match=re.escape("names the log 'another.name'")):
        reconcile(held_spki, carried)


def test_first_disagreement_compares_every_shared_hash(log: SyntheticLog) -> None:
    a, b = state(log, 3000, 600).tiles, state(log, 3500, 600).tiles
    assert first_disagreement(a, b) is None and first_disagreement(b, a) is None
    for rewritten, where in ((2999, "tile/0/011.p/184 hash 183"), (2560, "tile/0/010 hash 0")):
        other = state(fork_of(log, 3500, rewritten), 3500, 1000).tiles
        found = first_disagreement(a, other)
        assert found is not None and str(found) == where


def test_verify_time_checks(log: SyntheticLog) -> None:
    sealed = state(log, 5000, 600)
    held = {sealed.log_id: sealed}

    def fact(index: int, size: int, *, leaf: bytes | None = None, **changes: object) -> EntryFacts:
        values: dict[str, object] = {
            "log_id": sealed.log_id,
            "log_index": index,
            "entry_index": index,
            "index_signed": False,
            "leaf": leaf or log.leaf_hash(index),
            "proof_size": size,
            "checkpoint": log.checkpoint(size).encode(),
            "proof": tuple(log.inclusion_path(index, size)),
        }
        values.update(changes)
        return EntryFacts(**values)  # type: ignore[arg-type]

    said = check_entries([fact(4900, 4950)], held)
    assert said == [f"{log.origin}: entry 4900 is at its index in the sealed tree (size 5000)"]
    said = check_entries([fact(4300, 4450)], held)  # entry outside the tiles, its tree inside
    assert "consistent with the sealed tree (size 5000)" in said[0]
    said = check_entries([fact(100, 200)], held)
    assert "check not made" in said[0] and "do not cover entry 100" in said[0]
    bigger = SyntheticLog(5200, log.origin, log.key)
    newer = fact(
        5100,
        5200,
        leaf=bigger.leaf_hash(5100),
        checkpoint=bigger.checkpoint(5200).encode(),
        proof=tuple(bigger.inclusion_path(5100, 5200)),
    )
    assert "newer than the sealed one" in check_entries([newer], held)[0]
    with pytest.raises(TransparencyLogError, match="another leaf at index 4900"):
        check_entries([fact(4900, 4950, leaf=leaf_hash(b"not the entry"))], held)
    forged_root = log.checkpoint(4450, root=b"\2" * 32).encode()
    with pytest.raises(TransparencyLogError, match="not consistent"):
        check_entries([fact(4300, 4450, leaf=b"\0" * 32, checkpoint=forged_root)], held)


def entry_in(log: SyntheticLog, index: int, size: int, **changes: object) -> EntryFacts:
    """The entry at `index` of `log`, proved in its tree of `size` (as a bundle carries it)."""
    fact = EntryFacts(
        log_id=log_fact(log).log_id,
        log_index=index,
        entry_index=index,
        index_signed=False,
        leaf=log.leaf_hash(index),
        proof_size=size,
        checkpoint=log.checkpoint(size).encode(),
        proof=tuple(log.inclusion_path(index, size)),
    )
    return fact._replace(**changes)  # type: ignore[arg-type]


def test_a_fork_below_the_sealed_depth_in_a_larger_tree_is_refused_at_verify(log: SyntheticLog) -> None:
    """Issue 21, the residual: held tree 3000 with 10 entries of depth; the log rewrites entry
    100 and grows to 3500. The bundle's tree is larger than the sealed one (its root cannot be
    compared) and entry 100 is far below the sealed depth, but its proof's ancestors reach
    hashes the sealed level-1 edge tile holds: forked history, both roots, as on import."""
    sealed = state(log, 3000, 10)
    held = {sealed.log_id: sealed}
    fork = fork_of(log, 3500, 100)
    with pytest.raises(LogForkError) as refused:
        check_entries([entry_in(fork, 100, 3500)], held)
    message = refused.value.message
    assert "forked history" in message and "\n" not in message
    assert f"held root {log.root(3000).hex()} (tree size 3000)" in message
    assert f"the bundle's checkpoint root {fork.root(3500).hex()} (tree size 3500)" in message
    assert "they disagree at tile/1/000.p/11 hash 0 (entries [0, 256))" in message
    assert refused.value.held_root == log.root(3000) and refused.value.carried_root == fork.root(3500)
    # any entry of the forked tree whose proof reaches a sealed hash above the rewrite: refused
    for index in (7, 2000, 2999, 3400):
        with pytest.raises(LogForkError, match="forked history"):
            check_entries([entry_in(fork, index, 3500)], held)
    # an older forked tree than the sealed one, its root out of the sealed tiles' reach: the same
    deep = state(log, 5000, 10)
    with pytest.raises(LogForkError, match=re.escape("disagree at tile/1/000.p/19 hash 0")):
        check_entries([entry_in(fork, 100, 3500)], {deep.log_id: deep})
    # the honest log at the same sizes passes, saying which sealed hashes were compared
    said = check_entries([entry_in(log, 100, 3500)], held)
    assert said == [
        f"{log.origin}: entry 100 is in the sealed tree (size 3000): its tree (size 3500) agrees with "
        "it on entries [0, 2048) (7 sealed hashes compared)"
    ]
    said = check_entries([entry_in(log, 100, 3500)], {deep.log_id: deep})
    assert said[0].startswith(
        f"{log.origin}: entry 100 is in the sealed tree (size 5000): its tree (size 3500) "
    )
    said = check_entries([entry_in(log, 3200, 4500)], held)  # beyond the sealed tree: its left part
    assert said == [
        f"{log.origin}: entry 3200: its tree (size 4500) is newer than the sealed one (size 3000) and "
        "agrees with it on entries [0, 2048) (1 sealed hash compared), the rest is not checked"
    ]
    said = check_entries([entry_in(log, 2990, 4500)], held)  # covered: its leaf, and more
    assert said[0].startswith(f"{log.origin}: entry 2990 is at its index in the sealed tree (size 3000); ")
    assert "its tree (size 4500) agrees with it on entries [0, 2992)" in said[0]
    # a forked entry none of whose proof hashes is sealed: the honest note, unchanged
    far = fork_of(log, 4500, 100)
    said = check_entries([entry_in(far, 4200, 4500)], held)
    assert said == [
        f"{log.origin}: sealed-log check not made: its tree (size 4500) is newer than the sealed one "
        "(size 3000); none of the hashes its inclusion proof gives is sealed"
    ]
    # the held state answers as before after each refusal
    assert check_entries([entry_in(log, 2990, 3000)], held) == [
        f"{log.origin}: entry 2990 is at its index in the sealed tree (size 3000)"
    ]


def test_verify_time_proof_hashes_count_only_once_verified(log: SyntheticLog) -> None:
    """The proof's hashes are used only as verified against the checkpoint's *signed* root,
    size and the proved index: a proof that does not lead there is refused, not compared."""
    sealed = state(log, 3000, 10)
    held = {sealed.log_id: sealed}
    honest = entry_in(log, 100, 3500)
    assert honest.proof is not None
    tampered = (honest.proof[0], b"\7" * 32, *honest.proof[2:])
    with pytest.raises(TransparencyLogError, match="inclusion proof: leaf 100 does not hash to root"):
        check_entries([honest._replace(proof=tampered)], held)
    with pytest.raises(TransparencyLogError, match="proof hashes, expected"):
        check_entries([honest._replace(proof=honest.proof[:-1])], held)
    said = check_entries([honest._replace(proof=None)], held)  # no proof carried: nothing compared
    assert said == [
        f"{log.origin}: sealed-log check not made: its tree (size 3500) is newer than the sealed one "
        "(size 3000)"
    ]


def test_verify_time_checks_use_signed_facts_not_bundle_claims(log: SyntheticLog) -> None:
    """Issue 21: the held state is found by the key that signed the entry's checkpoint, the
    index is the proof's, the size the checkpoint's; claims that disagree are refused."""
    sealed = state(log, 5000, 600)
    held = {sealed.log_id: sealed}
    fork = fork_of(log, 5000, 4900)
    forked = EntryFacts(
        log_id=sealed.log_id,
        log_index=4900,
        entry_index=4900,
        index_signed=False,
        leaf=fork.leaf_hash(4900),
        proof_size=5000,
        checkpoint=fork.checkpoint(5000).encode(),
    )
    with pytest.raises(TransparencyLogError, match="another leaf at index 4900"):
        check_entries([forked], held)
    with pytest.raises(
        TransparencyLogError, match="names log 0000000000000000… but its checkpoint is signed"
    ):
        check_entries([forked._replace(log_id="00" * 32)], held)  # was: "no sealed state"
    with pytest.raises(TransparencyLogError, match="logIndex 7 is not its inclusion proof's index 4900"):
        check_entries([forked._replace(entry_index=7)], held)  # was: "not covered", passed
    with pytest.raises(TransparencyLogError, match="another leaf at index 4900"):
        check_entries([forked._replace(entry_index=7, index_signed=True)], held)  # a SET-signed index
    with pytest.raises(TransparencyLogError, match="tree size 4950 is not its signed checkpoint's 5000"):
        check_entries([forked._replace(proof_size=4950)], held)
    other_tree = SyntheticLog(5000, "other.tree", log.key)  # the same key, another name
    with pytest.raises(TransparencyLogError, match="names another tree"):
        check_entries(
            [
                forked._replace(
                    checkpoint=sign_note(other_tree.checkpoint_text(), log.origin, log.key).encode()
                )
            ],
            held,
        )
    stranger = SyntheticLog(5000, log.origin)  # another key: not this host's log
    said = check_entries([forked._replace(checkpoint=stranger.checkpoint().encode())], held)
    assert said == [f"log {sealed.log_id[:16]}…: no sealed state on this host; sealed-log check not made"]


def test_entry_facts_of_a_real_rekor_v2_bundle() -> None:
    bundle = (STAGING / "bundles" / "staging-rekor-v2.txt.sigstore.json").read_bytes()
    (fact,) = entry_facts(bundle)
    document = json.loads(bundle)["verificationMaterial"]["tlogEntries"][0]
    assert fact.log_index == fact.entry_index == int(document["logIndex"]) == 645 and fact.proof_size == 646
    assert fact.checkpoint == document["inclusionProof"]["checkpoint"]["envelope"].encode()
    assert not fact.index_signed
    trusted = json.loads((STAGING / "trusted_root.json").read_text())
    v2 = next(t for t in trusted["tlogs"] if t["publicKey"]["keyDetails"] == "PKIX_ED25519")
    import base64

    assert fact.log_id == base64.b64decode(v2["logId"]["keyId"]).hex()
    assert check_entries([fact], {}) == [
        f"log {fact.log_id[:16]}…: no sealed state on this host; sealed-log check not made"
    ]


def test_a_moved_url_keeps_the_held_state(log: SyntheticLog, tmp_path: Path) -> None:
    """Issue 20: same key, same log ID, another URL: the held state verifies (its origin is
    the name the log ID binds, not the URL's host), and so do states carried from there."""
    sealed = state(log, 5000, 600)
    write_sealed(tmp_path, sealed)
    moved = replace(sealed.log, base_url="https://elsewhere.example/log")
    assert origin_of(moved.base_url) != log.origin
    assert read_sealed(tmp_path, [moved])[sealed.log_id].checkpoint.origin == log.origin
    assert verify_log_state(moved, files_of(log, 5000, 10)).name == log.origin
    renamed = SyntheticLog(5000, "elsewhere.example", log.key)  # the key signing another name
    with pytest.raises(TransparencyLogError, match="no signature line carries the name the trust binds"):
        verify_log_state(moved, files_of(renamed, 5000, 10))


def test_a_log_the_trust_binds_no_name_to_pins_the_first_name(log: SyntheticLog, tmp_path: Path) -> None:
    """An entry whose log ID is its key's SPKI hash (a synthesized trust) names no origin: the
    URL's host[:port] at first sight, then the held state's own name, also after a move."""
    fact = spki_fact(log)
    sealed = verify_log_state(fact, files_of(log, 5000, 10))
    write_sealed(tmp_path, sealed)
    moved = replace(fact, base_url="https://elsewhere.example")
    assert read_sealed(tmp_path, [moved])[fact.log_id].name == log.origin
    with pytest.raises(TransparencyLogError, match=re.escape("no signature by elsewhere.example")):
        verify_log_state(moved, files_of(log, 5000, 10))  # first sight at the new URL


def test_a_damaged_held_state_is_exit_3_on_read_and_replaced_by_an_import(
    log: SyntheticLog, tmp_path: Path
) -> None:
    held_dir, carried_dir = tmp_path / "held", tmp_path / "carried"
    sealed = state(log, 5000, 600)
    write_sealed(held_dir, sealed)
    tile = held_dir / sealed.log_id / "tile" / "0" / "018"
    tile.write_bytes(bytes([tile.read_bytes()[0] ^ 1]) + tile.read_bytes()[1:])
    with pytest.raises(CacheVerificationError) as refused:
        read_sealed(held_dir, [sealed.log])
    assert f"remove {held_dir / sealed.log_id}" in (refused.value.hint or "")
    write_sealed(carried_dir, state(log, 4000, 100))  # older, but the held one is garbage
    _, written, notes = accept_carried(carried_dir, [sealed.log], held_dir, {})
    assert [w.checkpoint.size for w in written] == [4000]
    assert len(notes) == 1 and "does not verify" in notes[0] and "replaced by the carried one" in notes[0]


def test_accept_carried_refuses_a_fork_for_that_log_alone(log: SyntheticLog, tmp_path: Path) -> None:
    held_dir, carried_dir = tmp_path / "held", tmp_path / "carried"
    write_sealed(held_dir, state(log, 3000, 10))
    write_sealed(carried_dir, state(fork_of(log, 3500, 100), 3500, 10))
    carried, written, notes = accept_carried(carried_dir, [log_fact(log)], held_dir, {})
    assert len(carried) == 1 and written == []
    assert len(notes) == 1 and notes[0].startswith(f"{log.origin}: forked history: held root ")
    assert notes[0].endswith("the carried log state was refused and the held one kept")
    assert read_sealed(held_dir, [log_fact(log)])[log_fact(log).log_id].checkpoint.size == 3000


def test_the_held_state_is_reverified_on_every_read(log: SyntheticLog, tmp_path: Path) -> None:
    sealed = state(log, 5000, 600)
    write_sealed(tmp_path, sealed)
    assert read_sealed(tmp_path, [sealed.log])[sealed.log_id].checkpoint.size == 5000
    tile = tmp_path / sealed.log_id / "tile" / "0" / "018"
    tile.write_bytes(bytes([tile.read_bytes()[0] ^ 1]) + tile.read_bytes()[1:])
    with pytest.raises(CacheVerificationError, match="does not verify"):
        read_sealed(tmp_path, [sealed.log])
    write_sealed(tmp_path, sealed)  # replaced whole
    assert read_sealed(tmp_path, [sealed.log])[sealed.log_id].depth >= 600


def test_an_unreadable_fetch_time_is_dropped_not_a_traceback(log: SyntheticLog, tmp_path: Path) -> None:
    sealed = state(log, 5000, 300)
    write_sealed(tmp_path, sealed)
    (tmp_path / sealed.log_id / "sealed.json").write_text('{"fetched_at": "yesterday-ish"}')
    shown = read_sealed(tmp_path, [sealed.log])[sealed.log_id].to_json(NOW)
    assert shown["fetched_at"] is None and "age_seconds" not in shown and shown["tree_size"] == 5000
    (tmp_path / sealed.log_id / "sealed.json").write_text('{"fetched_at": 12}')
    assert read_sealed(tmp_path, [sealed.log])[sealed.log_id].fetched_at is None


def test_a_held_log_file_replaced_by_a_link_or_fifo_is_refused_or_never_opened(tmp_path: Path) -> None:
    """Held log states are read by the one rule for the cache (decision 18): a FIFO planted
    by the cache's owner is refused at once (O_NONBLOCK), never read or waited on."""
    from stella_trust._internal.sigstore.sealedlogs import read_state_dir
    from stella_trust.errors import CacheVerificationError

    state = tmp_path / "logid"
    state.mkdir()
    os.mkfifo(state / "checkpoint")
    (state / "tile").mkdir()
    (state / "tile" / "0").mkdir()
    (state / "tile" / "0" / "000").symlink_to("/dev/zero")
    with pytest.raises(CacheVerificationError, match="000 is a link"):
        read_state_dir(state)
    (state / "tile" / "0" / "000").unlink()
    files, _ = read_state_dir(state)  # returns at once: the FIFO is never opened
    assert "checkpoint" not in files
