"""Operator-side logic in process: signing rhythms, human durations, keys found by their
public key, and the client-side check every publication passes before it is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from stella_trust._internal.timefmt import compact_duration, expiry_phrase, human_duration
from stella_trust.repository import RepoError, Repository
from stella_trust.repository.clientcheck import known_metadata, root_of, verify_as_client
from stella_trust.repository.expiry import DEFAULTS, FIELD, parse_rule, read_rule, stamp_rule
from stella_trust.repository.keyring import key_files, public_block, same_key
from stella_trust.repository.keys import KeyFileError, save_key
from stella_trust.repository.published import Published, guard_versions

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_durations_read_as_people_say_them() -> None:
    assert human_duration(timedelta(days=3, hours=4, minutes=5)) == "3 days 4 hours"
    assert human_duration(timedelta(hours=1)) == "1 hour"
    assert human_duration(timedelta(seconds=-90)) == "1 minute 30 seconds"
    assert expiry_phrase(NOW + timedelta(days=3), NOW) == "expires in 3 days"
    assert expiry_phrase(NOW - timedelta(hours=2), NOW) == "expired 2 hours ago"
    assert [compact_duration(timedelta(days=14)), compact_duration(timedelta(hours=18))] == ["14d", "18h"]


def test_rhythm_is_read_from_the_signed_metadata_and_defaults_otherwise(tmp_path: Path) -> None:
    md = Metadata.from_bytes(_fresh_repo(tmp_path).snapshot.to_bytes())
    assert read_rule(md, "snapshot") == DEFAULTS["snapshot"]  # no field: the default
    assert read_rule(md, "snapshot", legacy_lifetime="7d").lifetime == timedelta(days=7)
    rule = parse_rule("snapshot", "28d", "10d")
    stamp_rule(md, rule)
    assert md.signed.unrecognized_fields[FIELD] == {"lifetime": "28d", "resign-within": "10d"}
    assert read_rule(Metadata.from_bytes(md.to_bytes()), "snapshot") == rule
    md.signed.unrecognized_fields[FIELD] = {"lifetime": "forever"}  # hand-edited: defaults, not a guess
    assert read_rule(md, "snapshot") == DEFAULTS["snapshot"]
    with pytest.raises(ValueError, match="shorter than the lifetime"):
        parse_rule("timestamp", "1d", "2d")


def test_online_roles_are_due_inside_their_window_and_missed_at_half() -> None:
    timestamp = DEFAULTS["timestamp"]
    assert not timestamp.due(NOW + timedelta(hours=20), NOW)
    assert timestamp.due(NOW + timedelta(hours=18), NOW)
    assert not timestamp.missed(NOW + timedelta(hours=10), NOW)
    assert timestamp.missed(NOW + timedelta(hours=9), NOW)


def test_key_files_are_found_by_their_public_key_whatever_their_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = CryptoSigner.generate_ed25519()
    other = CryptoSigner.generate_ed25519()
    save_key(tmp_path / "renamed-by-the-drive-holder.pem", signer, b"secret")
    pem = (tmp_path / "renamed-by-the-drive-holder.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----") and b"ENCRYPTED PRIVATE KEY" in pem
    block = public_block(pem)
    assert block is not None and same_key(block, signer.public_key) and not same_key(block, other.public_key)
    (kf,) = key_files(tmp_path)
    keys = {signer.public_key.keyid: signer.public_key, other.public_key.keyid: other.public_key}
    assert kf.matching(keys, [other.public_key.keyid]) is None
    assert kf.matching(keys, list(keys)) == signer.public_key.keyid
    monkeypatch.setenv("STELLA_RENAMED_BY_THE_DRIVE_HOLDER_PASSPHRASE", "secret")
    made = kf.signer_for(signer.public_key.keyid, signer.public_key)
    assert made.public_key.keyid == signer.public_key.keyid
    with pytest.raises(KeyFileError, match="its public key differs"):
        kf.signer_for(other.public_key.keyid, other.public_key)


def _fresh_repo(path: Path) -> Repository:
    return Repository.create(path, root_keys=1, root_threshold=1)


def test_client_check_refuses_a_root_that_orphans_targets(tmp_path: Path) -> None:
    repo = _fresh_repo(tmp_path / "repo")
    published = Published.of(repo.path)
    new_targets_key = CryptoSigner.generate_ed25519()
    root = repo.root.signed
    for keyid in list(root.roles["targets"].keyids):
        root.revoke_key(keyid, "targets")
    root.add_key(new_targets_key.public_key, "targets")
    root.version += 1
    repo.root.signatures.clear()
    for signer in repo.signers["root"]:
        repo.root.sign(signer, append=True)
    repo.record_root()
    before = {p.name: p.read_bytes() for p in (repo.path / "metadata").iterdir()}
    with pytest.raises(RepoError, match="clients would reject this repository"):
        verify_as_client(repo, published_root=published.root, known=published.known, on_disk=repo.path)
    assert {p.name: p.read_bytes() for p in (repo.path / "metadata").iterdir()} == before
    repo.signers["targets"] = [new_targets_key]  # re-signed with the new key: accepted
    repo.publish()
    reloaded = Repository.load(repo.path)
    verify_as_client(
        reloaded, published_root=published.root, known=published.known, on_disk=repo.path, overlay={}
    )


def test_version_guard_refuses_a_machine_behind_the_published_counters(tmp_path: Path) -> None:
    repo = _fresh_repo(tmp_path / "repo")
    behind = Repository.load(repo.path)
    repo.sign_snapshot_and_timestamp()
    repo.write()
    published = Published(root=root_of(repo.path), known=known_metadata(repo.path))
    behind.signers = {"snapshot": repo.signers["snapshot"], "timestamp": repo.signers["timestamp"]}
    behind.timestamp.signed.version += 1  # v2, as the published one: equal is refused too
    with pytest.raises(RepoError, match="would publish timestamp v2 but v2 is published"):
        guard_versions(behind, published)


def test_a_push_refuses_a_fork_clients_can_fetch_and_repairs_older_history(tmp_path: Path) -> None:
    """Decision 10: a version both the served and our snapshot name must keep its bytes; an
    older `N.role.json` no client can reach any more is repaired, never a refusal."""
    from stella_trust.repository.published import named, plan, served_directory

    repo = _fresh_repo(tmp_path / "served")
    original_v1 = (repo.path / "metadata" / "1.targets.json").read_bytes()
    repo.add_target("a.txt", b"a")
    repo.publish()  # the served snapshot now names targets v2
    ours = Repository.load(repo.path)
    (repo.path / "metadata" / "1.targets.json").write_bytes(b'{"an old drive": "copy"}')
    published = served_directory(repo.path, ours.root_history)
    assert published is not None
    older = plan([("metadata/1.targets.json", original_v1)], published, True, None, named(ours))
    assert older.repaired == ["metadata/1.targets.json"] and len(older.changed) == 1
    current = (repo.path / "metadata" / "2.targets.json").read_bytes()
    assert plan([("metadata/2.targets.json", current)], published, True, None, named(ours)).changed == []
    with pytest.raises(
        RepoError, match=r"metadata/2\.targets\.json is already published with different content"
    ):
        plan([("metadata/2.targets.json", current + b" ")], published, True, None, named(ours))
    with pytest.raises(RepoError, match=r"1\.root\.json is already published"):
        plan([("metadata/1.root.json", b"another root v1")], published, True, None, named(ours))
