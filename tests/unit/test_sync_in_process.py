"""Sync, rollback, freshness and trust sources in process, against an in-memory repository."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stella_trust import api
from stella_trust._internal.hostpolicy import trust_policy
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.verifiers import trust_file
from stella_trust.demo.repository import DemoRepository, service_map
from stella_trust.errors import RollbackError, ServiceMapError, StaleTrustError
from stella_trust.repository import Repository
from stella_trust.view import FreshnessState
from tests.unit.simulator import BASE_URL, Host, RepositoryFetcher, Simulated, synced

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"


def test_first_sync_fetches_and_idle_sync_costs_two_requests(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, fetcher = simulated
    store.write_anchor(demo.repo.root_bytes(1))
    first = sync(settings, store, fetcher=fetcher)
    assert first.changed and first.sources == ("service-map",)
    assert set(first.targets) == {
        "sigstore-services-v1.json",
        "rekor-key-v1.pub",
        "rekor-key-v2.pub",
        "fulcio-chain.pem",
    }
    again = RepositoryFetcher(demo.repo)
    idle = sync(settings, store, fetcher=again)
    assert not idle.changed and idle.downloaded == []
    assert again.paths() == ["/metadata/2.root.json", "/metadata/timestamp.json"]


def test_timestamp_rollback_is_refused_and_trust_kept(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    demo.repo.publish()
    synced(host, demo)
    held = load_view(settings, store).roles["timestamp"].version
    demo.repo.timestamp.signed.version = 1
    demo.repo.sign_role(demo.repo.timestamp)
    with pytest.raises(RollbackError, match="Rollback refused"):
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    view = load_view(settings, store)
    assert view.roles["timestamp"].version == held and view.usable
    assert store.read_state().last_error is not None and "Rollback refused" in store.read_state().last_error


def test_fast_forward_recovery_after_timestamp_key_rotation(host: Host, simulated: Simulated) -> None:
    """TUF 5.3.11: a rotated timestamp key lets versions restart below the floor."""
    settings, store = host
    demo, _ = simulated
    demo.repo.timestamp.signed.version = 999
    demo.repo.resign_timestamp()
    synced(host, demo)
    assert load_view(settings, store).roles["timestamp"].version == 1000
    demo.repo.timestamp.signed.version = 1
    demo.rotate("timestamp")
    result = sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert result.changed and result.versions["timestamp"] == 2


def test_freshness_follows_injected_now(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    expires = load_view(settings, store).freshness.expires
    week = timedelta(days=settings.freshness_threshold_days)
    assert load_view(settings, store, expires - timedelta(seconds=1)).freshness.state == FreshnessState.FRESH
    assert load_view(settings, store, expires).freshness.state == FreshnessState.GRACE
    stale = load_view(settings, store, expires + week)
    assert stale.freshness.state == FreshnessState.STALE and not stale.usable
    with pytest.raises(StaleTrustError):
        trust_file(stale, "trusted-root")


def _sigstore_repository(path: Path, *, with_map: bool = False) -> Repository:
    repo = Repository.create(path)
    repo.add_target("trusted_root.json", (STAGING / "trusted_root.json").read_bytes())
    repo.add_target("signing_config.v0.2.json", (STAGING / "signing_config.v0.2.json").read_bytes())
    if with_map:
        demo_keys = DemoRepository(path.parent / "keys-source")
        for name in ("rekor-key-v1.pub", "fulcio-chain.pem"):
            repo.add_target(name, demo_keys.repo.target_data[name])
        repo.add_target("sigstore-services-v1.json", service_map(demo_keys.rekor_v1))
    repo.publish()
    return repo


def test_sigstore_repository_needs_no_service_map(
    tmp_path: Path, host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = host
    repo = _sigstore_repository(tmp_path / "sigstore-repo")
    store.write_anchor(repo.root_bytes(1))
    result = sync(settings.model_copy(update={"pinned_targets": []}), store, fetcher=RepositoryFetcher(repo))
    assert result.sources == ("sigstore",)
    assert set(result.targets) == {"trusted_root.json", "signing_config.v0.2.json"}
    view = load_view(settings.model_copy(update={"pinned_targets": []}), store)
    assert view.service_map is None and view.sources == ("sigstore",)
    assert view.trusted_root_json == (STAGING / "trusted_root.json").read_bytes()
    assert view.endpoints.rekor.url == "https://rekor.sigstage.dev"
    assert {log.rekor_version for log in view.sigstore.transparency_logs} >= {1, 2}
    bundle = (STAGING / "bundles" / "bundle_v3.txt.sigstore.json").read_bytes()
    # the public verify_bundle keeps the verifier in the process memo, keyed by the root's digest
    memo = VerificationMemo()
    monkeypatch.setattr(api, "_PROCESS", memo)
    outcomes = [
        api.verify_bundle(
            view,
            bundle,
            (STAGING / "bundles" / "bundle_v3.txt").read_bytes(),
            identity="william@yossarian.net",
            issuer="https://github.com/login/oauth",
        )
        for _ in range(2)
    ]
    assert outcomes[0].signer == "william@yossarian.net" and outcomes[1] == outcomes[0]
    assert len(memo.verifiers) == 1
    assert hashlib.sha256(view.trusted_root_json).digest() in memo.verifiers


def test_repository_with_both_sources_yields_both(tmp_path: Path, host: Host) -> None:
    settings, store = host
    repo = _sigstore_repository(tmp_path / "both-repo", with_map=True)
    store.write_anchor(repo.root_bytes(1))
    plain = settings.model_copy(update={"pinned_targets": []})
    assert sync(plain, store, fetcher=RepositoryFetcher(repo)).sources == ("service-map", "sigstore")
    view = load_view(plain, store)
    assert view.service_map is not None and view.endpoints.rekor.url == "https://rekor.sigstore.example"
    assert view.trusted_root_json == (STAGING / "trusted_root.json").read_bytes()


def test_service_map_trust_becomes_a_trusted_root_sigstore_python_loads(
    tmp_path: Path, host: Host, simulated: Simulated
) -> None:
    from sigstore.models import ClientTrustConfig, TrustedRoot

    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    view = load_view(settings, store)
    exported = tmp_path / "trusted_root.json"
    exported.write_bytes(trust_file(view, "trusted-root"))
    root = TrustedRoot.from_file(str(exported))  # sigstore-python's own loader
    assert [log.log_id for log in view.sigstore.transparency_logs] == [view.rekor_log_id]
    assert len(root.get_fulcio_certs()) == 2
    config = ClientTrustConfig.from_json(trust_file(view, "client-trust-config").decode())
    assert config.trusted_root is not None


def test_repository_with_neither_source_is_refused_naming_both(tmp_path: Path, host: Host) -> None:
    settings, store = host
    repo = Repository.create(tmp_path / "empty-repo")
    repo.add_target("readme.txt", b"nothing to trust here")
    repo.publish()
    store.write_anchor(repo.root_bytes(1))
    with pytest.raises(ServiceMapError) as refused:
        sync(settings, store, fetcher=RepositoryFetcher(repo))
    assert "sigstore-services-v1" in refused.value.message and "trusted_root.json" in refused.value.message
    assert store.current() is None


def test_explicit_trust_source_in_settings(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "absent.yaml", {"tuf_url": BASE_URL, "trust_source": "sigstore"})
    assert trust_policy(settings).pins(("sigstore",)) == []
    assert json.loads(json.dumps(settings.model_dump(mode="json")))["trust_source"] == "sigstore"


def test_a_commit_fsyncs_what_is_new_and_not_the_files_linked_from_the_held_generation(
    host: tuple[TrustRepoSettings, Store],
    simulated: tuple[DemoRepository, RepositoryFetcher],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 6: the new generation is durable before `current` switches. Files hard-linked
    from the held generation were made durable at its commit; the new timestamp and every
    directory are fsynced now."""
    settings, store = host
    demo, fetcher = simulated
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=fetcher)
    held = store.current()
    assert held is not None
    shared = {p.name for p in (held.path / "metadata").rglob("*.json") if p.is_file() and not p.is_symlink()}
    synced: list[str] = []
    real_open, real_fsync = os.open, os.fsync
    opened: dict[int, str] = {}

    def recording_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = os.fspath(path)
        return fd

    def recording_fsync(fd: int) -> None:
        synced.append(opened.get(fd, "?"))
        real_fsync(fd)

    demo.repo.resign_timestamp()
    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert sync(settings, store, fetcher=fetcher).changed
    monkeypatch.undo()
    new = store.current()
    assert new is not None and new.path != held.path
    # Paths as they were in the working copy (renamed into the new generation since).
    synced_names = [Path(p).name for p in synced]
    assert "timestamp.json" in synced_names  # new bytes: made durable before the switch
    unchanged = {"snapshot.json", "targets.json"}  # only the timestamp was renewed
    assert unchanged <= shared
    for name in unchanged:  # the same inode in both generations: durable since the first commit
        assert (new.metadata_dir / name).stat().st_ino == (held.metadata_dir / name).stat().st_ino
    assert not set(synced_names) & unchanged
    assert {"metadata", "root_history", "targets"} <= set(synced_names)  # every directory
