"""Sealed log state in process (issue 14): reconcile rules, the verify-time check, and the
host's stored state re-verified on every read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stella_trust._internal.sigstore.logcheck import EntryFacts, check_entries, entry_facts
from stella_trust._internal.sigstore.merkle import leaf_hash
from stella_trust._internal.sigstore.sealedlogs import (
    SealedLog,
    origin_of,
    read_sealed,
    reconcile,
    tile_logs,
    verify_log_state,
    write_sealed,
)
from stella_trust._internal.sigstore.signednote import ed25519_key_hash
from stella_trust._internal.sigstore.tiles import tiles_for
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


def state(log: SyntheticLog, size: int, depth: int) -> SealedLog:
    every = log.tiles(size)
    files = {ref.path: every[ref.path] for ref in tiles_for(size, depth)}
    files["checkpoint"] = log.checkpoint(size).encode()
    return verify_log_state(log_fact(log), files, "2026-11-21T00:00:00Z")


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


def test_reconcile_says_when_growth_cannot_be_proven(log: SyntheticLog) -> None:
    kept, note = reconcile(state(log, 1000, 100), state(log, 5000, 100))
    assert kept.checkpoint.size == 5000 and note is not None and "not provable" in note


def test_reconcile_refuses_rollback_and_forks(log: SyntheticLog) -> None:
    with pytest.raises(TransparencyLogError, match="log state rollback"):
        reconcile(state(log, 5000, 100), state(log, 1000, 100))
    fork = SyntheticLog(5000, log.origin, log.key, entry=lambda i: b"other %d" % i)
    with pytest.raises(TransparencyLogError, match="another history"):
        reconcile(state(log, 5000, 100), state(fork, 5000, 100))
    with pytest.raises(TransparencyLogError, match="not consistent"):
        reconcile(state(log, 4000, 2000), state(fork, 5000, 2000))


def test_verify_time_checks(log: SyntheticLog) -> None:
    sealed = state(log, 5000, 600)
    held = {sealed.log_id: sealed}

    def fact(index: int, size: int, leaf: bytes | None = None) -> EntryFacts:
        return EntryFacts(sealed.log_id, index, leaf or log.leaf_hash(index), size, log.root(size))

    said = check_entries([fact(4900, 4950)], held)
    assert said == [f"{log.origin}: entry 4900 is at its index in the sealed tree (size 5000)"]
    said = check_entries([fact(4300, 4450)], held)  # entry outside the tiles, its tree inside
    assert "consistent with the sealed tree (size 5000)" in said[0]
    said = check_entries([fact(100, 200)], held)
    assert "check not made" in said[0] and "do not cover entry 100" in said[0]
    newer = EntryFacts(sealed.log_id, 5100, b"\0" * 32, 5200, b"\1" * 32)
    assert "newer than the sealed one" in check_entries([newer], held)[0]
    with pytest.raises(TransparencyLogError, match="another leaf at index 4900"):
        check_entries([fact(4900, 4950, leaf=leaf_hash(b"not the entry"))], held)
    with pytest.raises(TransparencyLogError, match="not consistent"):
        check_entries([EntryFacts(sealed.log_id, 4300, b"\0" * 32, 4450, b"\2" * 32)], held)


def test_entry_facts_of_a_real_rekor_v2_bundle() -> None:
    bundle = (STAGING / "bundles" / "staging-rekor-v2.txt.sigstore.json").read_bytes()
    (fact,) = entry_facts(bundle)
    document = json.loads(bundle)["verificationMaterial"]["tlogEntries"][0]
    assert fact.log_index == int(document["logIndex"]) == 645 and fact.tree_size == 646
    trusted = json.loads((STAGING / "trusted_root.json").read_text())
    v2 = next(t for t in trusted["tlogs"] if t["publicKey"]["keyDetails"] == "PKIX_ED25519")
    import base64

    assert fact.log_id == base64.b64decode(v2["logId"]["keyId"]).hex()
    assert check_entries([fact], {}) == [
        f"log {fact.log_id[:16]}…: no sealed state on this host; sealed-log check not made"
    ]


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
