"""Saying what changed (issue 12, items 4 and 6) in process: two verified views from an
in-memory repository, the words `describe_changes` gives them, what `sync` reports and the
agent logs, the earlier generation `trust diff` verifies, and `load_target`'s bytes."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stella_trust._agent import loop
from stella_trust._agent.loop import Agent
from stella_trust._agent.notify import Notifier
from stella_trust._internal import sync as sync_module
from stella_trust._internal.policy.changes import describe_changes, role_versions, target_changes
from stella_trust._internal.reader import generation_view, load_target, load_view, previous_generation
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import SERVICE_MAP, DemoRepository, rekor_keys, service_map
from stella_trust.errors import CacheVerificationError, StaleTrustError, UnknownTargetError
from stella_trust.repository import Repository
from stella_trust.view import TrustView
from tests.unit.simulator import Host, RepositoryFetcher, Simulated, synced

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"


def resync(host: Host, demo: DemoRepository) -> sync_module.SyncResult:
    settings, store = host
    return sync(settings, store, fetcher=RepositoryFetcher(demo.repo))


# ---- sync says what changed ---------------------------------------------------------------
def test_first_sync_says_trust_was_established(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, fetcher = simulated
    store.write_anchor(demo.repo.root_bytes(1))
    result = sync(settings, store, fetcher=fetcher)
    assert result.changes == ("trust established: root v1, 4 targets",)
    assert result.to_json()["changes"] == ["trust established: root v1, 4 targets"]


def test_rekor_key_rotation_names_the_key_and_the_downloaded_target(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    before = load_view(settings, store)
    demo.switch_to_rekor_v2()
    result = resync(host, demo)
    after = load_view(settings, store)
    assert result.downloaded == ["sigstore-services-v1.json"]
    assert result.changes[0].startswith("Rekor key changed: rekor-key-v1.pub -> rekor-key-v2.pub (log ID ")
    assert before.rekor_log_id[:16] in result.changes[0] and after.rekor_log_id[:16] in result.changes[0]
    assert result.changes[1].startswith("target changed: sigstore-services-v1.json (sha256 ")
    assert len(result.changes) == 2  # the synthesised trusted root's log is not named twice
    assert result.changes == tuple(describe_changes(before, after))  # the views, compared
    assert target_changes(before, after).changed == ("sigstore-services-v1.json",)


def test_root_rotation_is_named_with_both_versions(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    before = load_view(settings, store)
    demo.rotate("root")
    result = resync(host, demo)
    assert result.changes == ("root rotated v1 -> v2",)
    assert role_versions(before, load_view(settings, store))["root"] == (1, 2)


def test_idle_sync_computes_no_description(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo, _ = simulated
    synced(host, demo)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an idle sync must not describe anything")

    monkeypatch.setattr(sync_module, "_describe", forbidden)
    monkeypatch.setattr(sync_module, "describe_changes", forbidden)
    idle = resync(host, demo)
    assert not idle.changed and idle.changes == () and idle.to_json()["changes"] == []


def test_targets_added_and_removed(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.repo.add_target("extra-key.pub", rekor_keys()[0])
    demo.repo.publish()
    host = (settings.model_copy(update={"pinned_targets": ["rekor-key-v2", "extra-key"]}), store)
    added = resync(host, demo)
    assert added.downloaded == ["extra-key.pub"] and added.changes == ("target added: extra-key.pub",)
    demo.repo.remove_target("extra-key.pub")
    demo.repo.publish()
    removed = resync(host, demo)
    assert removed.changes == ("target removed: extra-key.pub",)


def test_endpoint_change_is_said_with_both_urls(host: Host, simulated: Simulated) -> None:
    demo, _ = simulated
    synced(host, demo)
    document = json.loads(service_map(demo.rekor_v1))
    document["rekor"]["url"] = "https://rekor.moved.example"
    demo.repo.add_target(SERVICE_MAP, json.dumps(document).encode())
    demo.repo.publish()
    changes = resync(host, demo).changes
    assert changes[0] == "rekor url https://rekor.sigstore.example -> https://rekor.moved.example"
    assert changes[1].startswith("target changed: sigstore-services-v1.json")
    assert len(changes) == 2  # same key, same log ID: the log itself did not change


def test_a_damaged_earlier_generation_is_not_compared(host: Host, simulated: Simulated) -> None:
    _, store = host
    demo, _ = simulated
    synced(host, demo)
    current = store.current()
    assert current is not None
    path = current.target_path("rekor-key-v1.pub")
    path.write_bytes(path.read_bytes().replace(b"A", b"B", 1))
    demo.repo.resign_timestamp()
    changes = resync(host, demo).changes
    assert changes[0].startswith("earlier trust not compared (it does not verify: target rekor-key-v1.pub")
    assert changes[1] == "trust established: root v1, 4 targets"


# ---- trusted-root entries (Sigstore-native trust), pure ------------------------------------
@pytest.fixture
def sigstore_view(tmp_path: Path, host: Host) -> TrustView:
    settings, store = host
    repo = Repository.create(tmp_path / "sigstore-repo")
    repo.add_target("trusted_root.json", (STAGING / "trusted_root.json").read_bytes())
    repo.add_target("signing_config.v0.2.json", (STAGING / "signing_config.v0.2.json").read_bytes())
    repo.publish()
    plain = settings.model_copy(update={"pinned_targets": []})
    store.write_anchor(repo.root_bytes(1))
    sync(plain, store, fetcher=RepositoryFetcher(repo))
    return load_view(plain, store)


def test_trusted_root_entries_added_removed_and_retired(sigstore_view: TrustView) -> None:
    trust = sigstore_view.sigstore
    assert len(trust.transparency_logs) >= 2 and trust.ctlogs and trust.timestamp_authorities
    gone_log = trust.transparency_logs[-1]
    ctlog = next(log for log in trust.ctlogs if log.valid_until is None)  # ctfe.sigstage.dev/2022-2
    end = sigstore_view.at + timedelta(days=30)
    after_trust = replace(
        trust,
        transparency_logs=trust.transparency_logs[:-1],
        ctlogs=tuple(replace(log, valid_until=end) if log is ctlog else log for log in trust.ctlogs),
        timestamp_authorities=(),
    )
    after = replace(sigstore_view, sigstore=after_trust)
    lines = describe_changes(sigstore_view, after)
    assert f"transparency log removed: {gone_log.base_url} (log ID {gone_log.log_id[:16]}…" in lines[0]
    tsa = trust.timestamp_authorities[0]
    assert f"timestamp authority removed: {tsa.uri}" in "\n".join(lines)
    assert (
        f"CT log retired: {ctlog.base_url} (log ID {ctlog.log_id[:16]}…, {ctlog.key_algorithm}), valid until "
        in lines[1]
    )
    back = describe_changes(after, sigstore_view)
    assert any(line.startswith(f"transparency log added: {gone_log.base_url}") for line in back)
    assert describe_changes(sigstore_view, sigstore_view) == []


# ---- the earlier generation (trust diff) -------------------------------------------------
def test_previous_generation_verifies_and_describes_the_last_change(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    assert previous_generation(store) is None  # one generation: nothing earlier kept
    demo.rotate("root")
    result = resync(host, demo)
    previous = previous_generation(store)
    assert previous is not None
    before = generation_view(settings, store, previous)
    assert before.roles["root"].version == 1
    assert describe_changes(before, load_view(settings, store)) == list(result.changes)


def test_a_tampered_previous_generation_is_refused(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.switch_to_rekor_v2()
    resync(host, demo)
    previous = previous_generation(store)
    assert previous is not None
    target = previous.target_path("sigstore-services-v1.json")
    data = target.read_bytes()
    target.unlink()  # a hard link shared with nobody now: edit this copy only
    target.write_bytes(data.replace(b"rekor", b"rekoR", 1))
    with pytest.raises(CacheVerificationError, match=r"sigstore-services-v1\.json: length or hash mismatch"):
        generation_view(settings, store, previous)


# ---- one target's verified bytes -----------------------------------------------------------
def test_load_target_serves_the_verified_bytes(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    _view, entry, data = load_target(settings, store, "rekor-key-v1")
    assert entry.name == "rekor-key-v1.pub" and data == demo.repo.target_data["rekor-key-v1.pub"]
    with pytest.raises(UnknownTargetError, match=r"'rekor-key-v3'.*close names: .*rekor-key-v1.pub"):
        load_target(settings, store, "rekor-key-v3")
    later = load_view(settings, store).freshness.stale_after + timedelta(seconds=1)
    with pytest.raises(StaleTrustError):
        load_target(settings, store, "rekor-key-v1.pub", later)
    current = store.current()
    assert current is not None
    path = current.target_path("rekor-key-v1.pub")
    path.write_bytes(path.read_bytes()[:-2] + b"x\n")
    with pytest.raises(CacheVerificationError, match=r"rekor-key-v1\.pub: length or hash mismatch"):
        load_target(settings, store, "rekor-key-v1.pub")


# ---- the agent logs each change once -------------------------------------------------------
def test_agent_logs_each_change_once_per_changing_cycle(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings, _ = host
    demo, _ = simulated
    synced(host, demo)

    def simulated_sync(s: TrustRepoSettings, st: Store, **kwargs: Any) -> Any:
        return sync(s, st, **{**kwargs, "fetcher": RepositoryFetcher(demo.repo)})

    monkeypatch.setattr(loop, "sync", simulated_sync)
    caplog.set_level(logging.INFO)
    agent = Agent(lambda: settings, notifier=Notifier({}), logger=logging.getLogger("test-changes"))
    demo.switch_to_rekor_v2()
    outcome = agent.guarded_cycle()
    assert outcome.ok and outcome.changed and outcome.changes[0].startswith("Rekor key changed")
    assert agent.guarded_cycle().changes == ()  # idle: nothing more to say
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trust changed: ")]
    assert said == [f"trust changed: {change}" for change in outcome.changes]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() in said)
