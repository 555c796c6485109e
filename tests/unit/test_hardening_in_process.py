"""Hardening from the attack review, in process (each fails on the code before the fix)."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import Signature, SSlibKey
from tuf.api import exceptions as tuf_exceptions

from stella_trust._internal.bundle.export import export_archive
from stella_trust._internal.fs import atomic_write
from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust._internal.policy.freshness import require_usable
from stella_trust._internal.policy.servicemap import parse_service_map
from stella_trust._internal.reader import load_view, open_trust
from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.tuf.offline import verify_metadata
from stella_trust.demo.repository import rekor_keys, service_map
from stella_trust.errors import (
    AnchorChangedError,
    CacheVerificationError,
    RepositoryUnreachableError,
    RollbackError,
    ServiceMapError,
    StaleTrustError,
    UnknownTargetError,
    UsageError,
)
from tests.conftest import FaultyServer
from tests.unit.simulator import Host, RepositoryFetcher, Simulated, synced


def test_snapshot_key_rotation_recovers_from_fast_forward(host: Host, simulated: Simulated) -> None:
    """TUF 5.3.11 after a *snapshot* key rotation: the timestamp key did not rotate, so the
    local timestamp still verifies; it must be forgotten, not compared (no --force needed)."""
    settings, store = host
    demo, _ = simulated
    demo.repo.snapshot.signed.version = 999
    demo.repo.timestamp.signed.version = 999
    demo.repo.sign_snapshot_and_timestamp()
    demo.repo.write()
    synced(host, demo)
    assert load_view(settings, store).roles["snapshot"].version == 1000
    demo.repo.snapshot.signed.version = 1
    demo.repo.timestamp.signed.version = 1
    demo.rotate("snapshot")
    result = sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert result.changed and result.versions["snapshot"] == 2 and result.versions["timestamp"] == 2
    assert load_view(settings, store).roles["root"].version == 2


def test_idle_sync_checks_the_floor(host: Host, simulated: Simulated) -> None:
    """Cache rolled back on disk while the mirror serves the same old metadata: the sync
    is idle, yet the floor recorded at the last commit refuses it."""
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    old_files = RepositoryFetcher(demo.repo).files()
    demo.switch_to_rekor_v2()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    previous = sorted(p for p in store.generations_dir.iterdir() if not p.name.startswith("."))[0]
    os.unlink(store.current_link)
    os.symlink(f"generations/{previous.name}", store.current_link)
    mirror = RepositoryFetcher(demo.repo)
    mirror.overrides.update(old_files)
    mirror.overrides.update({f"metadata/{v}.root.json": 404 for v in range(2, 4)})
    with pytest.raises(RollbackError, match="Rollback refused"):
        sync(settings, store, fetcher=mirror)


def test_one_key_listed_twice_cannot_meet_threshold_two(simulated: Simulated) -> None:
    demo, _ = simulated
    repo = demo.repo
    signer = repo.signers["timestamp"][0]
    key = signer.public_key
    twin = SSlibKey("ab" * 32, key.keytype, key.scheme, dict(key.keyval))
    repo.root.signed.add_key(twin, "timestamp")
    repo.root.signed.roles["timestamp"].threshold = 2
    repo.root.signed.version += 1
    repo.root.signatures.clear()
    for root_signer in repo.signers["root"]:
        repo.root.sign(root_signer, append=True)
    repo.record_root()
    repo.sign_snapshot_and_timestamp()
    first = repo.timestamp.signatures[key.keyid]
    repo.timestamp.signatures[twin.keyid] = Signature(twin.keyid, first.signature)
    repo.write()
    with pytest.raises(CacheVerificationError, match="lists the same key twice"):
        from stella_trust._internal.tuf.offline import verify_root_chain

        verify_root_chain(repo.root_bytes(1), repo.metadata_dir / "root-history-absent")
        metadata = repo.path / "client-view"
        (metadata / "root_history").mkdir(parents=True)
        for version in (1, 2):
            (metadata / "root_history" / f"{version}.root.json").write_bytes(repo.root_bytes(version))
        for role in ("timestamp", "snapshot", "targets"):
            (metadata / f"{role}.json").write_bytes((repo.metadata_dir / f"{role}.json").read_bytes())
        verify_metadata(metadata, repo.root_bytes(1))


def test_service_map_overrides_are_validated() -> None:
    base = json.loads(service_map(rekor_keys()[0]))
    base["overrides"]["staging"]["rekor_url"] = None
    with pytest.raises(ServiceMapError, match=r"rekor\.url.*environment staging"):
        parse_service_map(json.dumps(base).encode(), "m")
    base["overrides"]["staging"] = {"rekor_public_key_target": 7}
    with pytest.raises(ServiceMapError, match="must be a non-empty string"):
        parse_service_map(json.dumps(base).encode(), "m")


def test_key_lookup_by_stem_refuses_ambiguity(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    demo.repo.add_target("extra-key.pub", demo.rekor_v1)
    demo.repo.add_target("extra-key.alt.pub", demo.rekor_v2)
    demo.repo.publish()
    both = settings.model_copy(update={"pinned_targets": ["extra-key.pub", "extra-key.alt.pub"]})
    store.write_anchor(demo.repo.root_bytes(1))
    sync(both, store, fetcher=RepositoryFetcher(demo.repo))
    view = load_view(both, store)
    assert view.key("extra-key.pub").target == "extra-key.pub"
    with pytest.raises(UnknownTargetError, match="ambiguous"):
        view.key("extra-key")


def test_library_ignores_the_service_map_variable_unless_asked(
    host: Host, simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    local = tmp_path / "map.json"
    document = json.loads(service_map(demo.rekor_v1))
    document["rekor"]["url"] = "https://rekor.attacker.example"
    local.write_text(json.dumps(document))
    monkeypatch.setenv("STELLA_SIGSTORE_SERVICE_MAP", str(local))
    config = tmp_path / "trust.yaml"
    config.write_text(f"attestor:\n  trust_repo:\n    tuf_url: {settings.tuf_url}\n")
    view = open_trust(store.root, config_path=config)
    assert view.endpoints.rekor.url == "https://rekor.sigstore.example"
    chosen = open_trust(store.root, config_path=config, allow_env_service_map=True)
    assert chosen.endpoints.rekor.url == "https://rekor.attacker.example"


def test_retired_pin_is_dropped_and_reported(host: Host, simulated: Simulated) -> None:
    settings, store = host  # pins rekor-key-v2
    demo, _ = simulated
    synced(host, demo)
    demo.repo.remove_target("rekor-key-v2.pub")
    demo.repo.publish()
    result = sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert result.changed and result.retired_pins == ("rekor-key-v2",)
    view = load_view(settings, store)
    assert view.usable and view.missing_pins == ("rekor-key-v2",) and view.retired_pins == ("rekor-key-v2",)
    typo = settings.model_copy(update={"pinned_targets": ["rekor-key-v9"]})
    with pytest.raises(UnknownTargetError):  # never held: a typo stays an error
        sync(typo, store, fetcher=RepositoryFetcher(demo.repo))


def test_export_needs_no_writer_lock(host: Host, simulated: Simulated, tmp_path: Path) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    with store.lock(timeout=0):  # a sync holds the lock: a reader still exports
        summary = export_archive(
            settings.model_copy(update={"lock_timeout_seconds": 0}), store, tmp_path / "b.tar.zst"
        )
    assert summary.files > 0 and (tmp_path / "b.tar.zst").stat().st_size > 0


def test_anchor_pin_and_current_outside_generations(host: Host, simulated: Simulated, tmp_path: Path) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    pinned = Store(store.root, anchor_sha256="0" * 64)
    with pytest.raises(AnchorChangedError, match="trust anchor changed on disk"):
        load_view(settings, pinned)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.unlink(store.current_link)
    os.symlink(elsewhere, store.current_link)
    with pytest.raises(CacheVerificationError, match="points outside generations"):
        load_view(settings, store)


def test_empty_issuer_is_refused() -> None:
    with pytest.raises(UsageError, match="must not be empty"):
        IdentityPolicy(identity="someone@example.com", issuer="")
    with pytest.raises(UsageError, match="must not be empty"):
        IdentityPolicy(identity_regexp=" ", issuer="https://issuer.example")


def test_a_kept_view_turns_stale_by_the_clock(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    view = load_view(settings, store)
    require_usable(view, view.at)
    later = view.freshness.stale_after + timedelta(seconds=1)
    with pytest.raises(StaleTrustError):
        require_usable(view, later)  # the clock, not the view's own `at`


def test_atomic_write_mode_ignores_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "metrics.prom", b"x 1\n", mode=0o644, durable=False)
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.prom").stat().st_mode & 0o777 == 0o644


def test_a_root_that_revokes_the_cached_keys_is_kept_when_the_sync_fails(
    host: Host, simulated: Simulated
) -> None:
    """TUF 5.3.11: the new root revoking the (compromised) timestamp key is committed even
    though a later step of the same sync failed; the old trust it revokes is refused."""
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.rotate("timestamp")
    broken = RepositoryFetcher(demo.repo)
    broken.overrides[f"metadata/{demo.repo.snapshot.signed.version}.snapshot.json"] = 503
    with pytest.raises(RepositoryUnreachableError):
        sync(settings, store, fetcher=broken)
    assert [p.name for p in store.committed_roots()] == ["2.root.json"]
    with pytest.raises(CacheVerificationError, match="timestamp"):
        load_view(settings, store)  # signed by a key root v2 revoked
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert store.committed_roots() == [] and load_view(settings, store).roles["root"].version == 2


def test_a_root_that_revokes_nothing_waits_for_the_next_sync(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.rotate("root")
    broken = RepositoryFetcher(demo.repo)
    broken.overrides["metadata/timestamp.json"] = 503
    with pytest.raises(RepositoryUnreachableError):
        sync(settings, store, fetcher=broken)
    assert store.committed_roots() == []
    assert load_view(settings, store).roles["root"].version == 1  # cached trust still usable


def test_a_pin_not_yet_fetched_is_reported_not_unusable(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    added = settings.model_copy(update={"pinned_targets": ["rekor-key-v2", "fulcio-chain"]})
    demo.repo.add_target("extra.pem", b"-----BEGIN PUBLIC KEY-----\n")
    view = load_view(added.model_copy(update={"pinned_targets": ["extra.pem"]}), store)
    assert view.usable and view.missing_pins == ("extra.pem",) and view.retired_pins == ()
    assert view.to_json()["pins"] == {"missing": ["extra.pem"], "retired": []}


def test_retired_pins_are_a_metric() -> None:
    from stella_trust._agent.metrics import AgentMetrics

    text = AgentMetrics(retired_pins=["rekor-key-v2"]).render()
    assert 'stella_trust_pinned_target_retired{target="rekor-key-v2"} 1' in text


def test_conformance_client_refuses_target_names_that_leave_its_directory(tmp_path: Path) -> None:
    from stella_trust.conformance.tuf_client import run
    from stella_trust.repository import Repository

    repo = Repository.create(tmp_path / "repo")
    repo.add_target("..", b"escape")
    repo.publish()
    meta, targets = tmp_path / "meta", tmp_path / "out" / "targets"
    run(["--metadata-dir", str(meta), "init", str(repo.metadata_dir / "1.root.json")])
    base = repo.path.as_uri()
    with pytest.raises(LookupError, match="cannot be stored"):
        run(
            [
                "--metadata-dir",
                str(meta),
                "--metadata-url",
                f"{base}/metadata/",
                "--target-name",
                "..",
                "--target-base-url",
                f"{base}/targets/",
                "--target-dir",
                str(targets),
                "download",
            ]
        )
    assert not (tmp_path / "out" / "escape").exists() and not (tmp_path / "out").joinpath("..").is_file()


def test_dribbling_server_hits_the_deadline(server: FaultyServer) -> None:
    server.inject("/metadata/1.root.json", "slow", 0.2)
    started = time.monotonic()
    with HttpxFetcher(timeout=5, deadline=1) as fetcher, pytest.raises(tuf_exceptions.SlowRetrievalError):
        fetcher.download_bytes(f"{server.url}/metadata/1.root.json", 512_000)
    assert time.monotonic() - started < 3


def test_commit_replaces_a_directory_put_in_place_of_current(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    with store.lock(timeout=1):
        store.commit(store.begin(None))
        os.unlink(store.current_link)
        store.current_link.mkdir()
        (store.current_link / "junk").write_text("x")
        committed = store.commit(store.begin(None))
    current = store.current()
    assert store.current_link.is_symlink()
    assert current is not None and current.path == committed.path
