"""The legacy Sigstore targets as a trust source (decision 21), in process: a repository we
build from the real staging keys and chains (tests/legacy_repo.py) synced through the real
sync, store and reader; the real public-good repository's signed target metadata for the
parser; sigstore-python for loading the synthesised trusted root and verifying real bundles."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, TargetFile

from stella_trust._internal.policy.inputs import LEGACY, SIGSTORE, TrustPolicy, VerifiedTargets
from stella_trust._internal.policy.legacy import expired_record, from_legacy, legacy_targets
from stella_trust._internal.policy.sources import source_kinds
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.sigstore.errors import BundleVerificationError
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.verifiers import trust_file
from stella_trust.api import verify_bundle
from stella_trust.errors import ServiceMapError, StellaError
from stella_trust.repository import Repository
from tests.legacy_repo import (
    REKOR_V1_LOG_ID,
    REKOR_V2_LOG_ID,
    STAGING,
    legacy_repository,
    mark_rekor,
)
from tests.unit.simulator import Host, RepositoryFetcher

PUBLIC_GOOD = STAGING.parent / "public-good-2025-10"
CASES: list[dict[str, str]] = json.loads((STAGING / "cases.json").read_text())
PUBLIC_REKOR = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
# between bundle.txt (integrated 2023-04-26) and bundle_v3.txt (integrated 2024-04-02)
MARKED_EXPIRED_AT = datetime(2024, 1, 1, tzinfo=UTC)


def _plain(host: Host) -> Host:
    settings, store = host
    return settings.model_copy(update={"pinned_targets": []}), store


def _synced(tmp_path: Path, host: Host, **kwargs: Any) -> tuple[Repository, Host]:
    settings, store = _plain(host)
    repo = legacy_repository(tmp_path / "legacy-repo", **kwargs)
    store.write_anchor(repo.root_bytes(1))
    sync(settings, store, fetcher=RepositoryFetcher(repo))
    return repo, (settings, store)


def _verify(view: Any, case: dict[str, str]) -> Any:
    return verify_bundle(
        view,
        (STAGING / "bundles" / case["bundle"]).read_bytes(),
        (STAGING / "bundles" / case["artifact"]).read_bytes(),
        identity=case["identity"],
        issuer=case["issuer"],
    )


def _case(bundle: str) -> dict[str, str]:
    return next(c for c in CASES if c["bundle"] == bundle and c["expect"] == "ok")


def test_auto_detects_legacy_targets_and_holds_only_the_marked_ones(tmp_path: Path, host: Host) -> None:
    settings, store = _plain(host)
    repo = legacy_repository(tmp_path / "legacy-repo")
    store.write_anchor(repo.root_bytes(1))
    result = sync(settings, store, fetcher=RepositoryFetcher(repo))
    assert result.sources == (LEGACY,)
    assert "artifact.pub" not in result.targets  # usage Unknown: not trust material
    assert result.targets["rekor.pub"] == "legacy-rekor"
    assert result.targets["fulcio_v1.crt.pem"] == "legacy-fulcio"
    assert result.targets["tsa_leaf.crt.pem"] == "legacy-tsa"
    view = load_view(settings, store)
    assert view.sources == (LEGACY,)
    logs = {log.base_url: log for log in view.sigstore.transparency_logs}
    # the log IDs the real staging trusted_root.json names, recomputed from the bare keys
    assert logs["https://rekor.sigstage.dev"].log_id == REKOR_V1_LOG_ID
    assert logs["https://log2025-alpha1.rekor.sigstage.dev"].log_id == REKOR_V2_LOG_ID
    assert logs["https://log2025-alpha1.rekor.sigstage.dev"].rekor_version == 2
    assert all(log.valid_until is None for log in logs.values())
    assert view.endpoints.rekor.public_key_target == "rekor.pub"
    assert view.endpoints.fulcio.root_cert_target == "fulcio_v1.crt.pem"
    (ca,) = view.sigstore.certificate_authorities
    assert ca.subjects == ("CN=sigstore-intermediate,O=sigstore.dev", "CN=sigstore,O=sigstore.dev")
    assert len(view.sigstore.timestamp_authorities[0].subjects) == 2
    assert sorted(log.status(view.at) for log in view.sigstore.ctlogs) == ["active", "retired"]
    # the next sync is idle and keeps the source
    again = sync(settings, store, fetcher=RepositoryFetcher(repo))
    assert not again.changed and again.sources == (LEGACY,)


def test_synthesised_trusted_root_loads_in_sigstore_python_and_verifies_every_staging_case(
    tmp_path: Path, host: Host
) -> None:
    from sigstore.models import ClientTrustConfig, TrustedRoot

    _, (settings, store) = _synced(tmp_path, host)
    view = load_view(settings, store)
    exported = tmp_path / "trusted_root.json"
    exported.write_bytes(trust_file(view, "trusted-root"))
    root = TrustedRoot.from_file(str(exported))  # sigstore-python's own loader
    assert len(root.get_fulcio_certs()) == 2
    assert ClientTrustConfig.from_json(trust_file(view, "client-trust-config").decode()).trusted_root
    for case in CASES:
        if case["expect"] == "ok":
            assert _verify(view, case).signer == case["identity"], case["note"]
        else:
            with pytest.raises(StellaError):
                _verify(view, case)


def test_an_expired_rekor_key_refuses_entries_after_the_host_first_saw_it_expired(
    tmp_path: Path, host: Host
) -> None:
    repo, (settings, store) = _synced(tmp_path, host)
    mark_rekor(repo, "Expired")
    result = sync(settings, store, now=MARKED_EXPIRED_AT, fetcher=RepositoryFetcher(repo))
    assert result.changes == (
        "transparency log retired: https://rekor.sigstage.dev (log ID d32f30a3c32d639c…, "
        "ecdsa-p256-sha256), valid until 2024-01-01T00:00:00Z",
    )
    view = load_view(settings, store)
    log = next(log for log in view.sigstore.transparency_logs if log.log_id == REKOR_V1_LOG_ID)
    assert log.valid_until == MARKED_EXPIRED_AT and log.status(view.at) == "retired"
    assert _verify(view, _case("bundle.txt.sigstore.json")).signer == "a@tny.town"  # integrated 2023
    with pytest.raises(BundleVerificationError) as refused:
        _verify(view, _case("bundle_v3.txt.sigstore.json"))  # integrated 2024-04
    assert "outside the validity of its log" in refused.value.message and refused.value.hint
    # later syncs keep the first sighting: the window does not creep forward
    sync(settings, store, fetcher=RepositoryFetcher(repo))
    (rekor,) = [t for t in legacy_targets(repo.targets.signed.targets) if t.name == "rekor.pub"]
    assert store.read_state().legacy_expired[rekor.sha256] == "2024-01-01T00:00:00Z"
    with pytest.raises(BundleVerificationError):
        _verify(load_view(settings, store), _case("bundle_v3.txt.sigstore.json"))
    # marked Active again: the window opens again
    mark_rekor(repo, "Active")
    sync(settings, store, fetcher=RepositoryFetcher(repo))
    assert rekor.sha256 not in store.read_state().legacy_expired
    _verify(load_view(settings, store), _case("bundle_v3.txt.sigstore.json"))


def test_an_edited_record_cannot_extend_a_window_past_now_and_a_lost_one_narrows_it(
    tmp_path: Path, host: Host
) -> None:
    repo, (settings, store) = _synced(tmp_path, host, rekor_status="Expired")
    state = store.read_state()
    (rekor,) = [t for t in legacy_targets(repo.targets.signed.targets) if t.name == "rekor.pub"]
    state.legacy_expired = {rekor.sha256: "2999-01-01T00:00:00Z"}
    store.write_state(state)
    view = load_view(settings, store)
    log = next(log for log in view.sigstore.transparency_logs if log.log_id == REKOR_V1_LOG_ID)
    assert log.valid_until is not None and log.valid_until <= view.at
    state.legacy_expired = {}
    store.write_state(state)
    view = load_view(settings, store)
    with pytest.raises(BundleVerificationError):  # no record: an empty window until the next sync
        _verify(view, _case("bundle.txt.sigstore.json"))
    sync(settings, store, fetcher=RepositoryFetcher(repo))
    _verify(load_view(settings, store), _case("bundle.txt.sigstore.json"))


def test_a_publication_adding_trusted_root_json_switches_the_source(tmp_path: Path, host: Host) -> None:
    repo, (settings, store) = _synced(tmp_path, host)
    recorded = settings.model_copy(update={"trust_source": "legacy"})  # what `init` records
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        repo.add_target(name, (STAGING / name).read_bytes())
    repo.publish()
    result = sync(recorded, store, fetcher=RepositoryFetcher(repo))
    assert result.sources == (SIGSTORE,) and set(result.targets) == {
        "trusted_root.json",
        "signing_config.v0.2.json",
    }
    view = load_view(recorded, store)
    assert view.sources == (SIGSTORE,)
    assert view.trusted_root_json == (STAGING / "trusted_root.json").read_bytes()
    idle = sync(recorded, store, fetcher=RepositoryFetcher(repo))
    assert not idle.changed and idle.sources == (SIGSTORE,)
    _verify(load_view(recorded, store), _case("bundle_v3.txt.sigstore.json"))


def test_legacy_configured_on_a_repository_without_marks_is_refused(tmp_path: Path, host: Host) -> None:
    settings, store = _plain(host)
    repo = Repository.create(tmp_path / "plain-repo")
    repo.add_target("readme.txt", b"nothing to trust")
    repo.publish()
    store.write_anchor(repo.root_bytes(1))
    with pytest.raises(ServiceMapError) as refused:
        sync(settings.model_copy(update={"trust_source": "legacy"}), store, fetcher=RepositoryFetcher(repo))
    assert "Legacy Sigstore targets not found" in refused.value.message and refused.value.hint
    assert store.current() is None


# ---- the real public-good repository's signed target metadata ---------------------------------
def _public_good_targets() -> VerifiedTargets:
    md = Metadata.from_bytes((PUBLIC_GOOD / "metadata" / "13.targets.json").read_bytes())
    info: dict[str, TargetFile] = dict(md.signed.targets)
    contents = {}
    for name, target in info.items():
        (path,) = (PUBLIC_GOOD / "targets").glob(f"{target.hashes['sha256']}.{name}")
        contents[name] = path.read_bytes()
    return VerifiedTargets(info, contents)


def test_public_good_auto_stays_sigstore_though_it_marks_legacy_targets() -> None:
    targets = _public_good_targets()
    marks = {t.name: (t.usage, t.status) for t in legacy_targets(targets.info)}
    assert marks["rekor.pub"] == ("Rekor", "Active")
    assert marks["fulcio.crt.pem"] == ("Fulcio", "Expired")
    assert "artifact.pub" not in marks
    for configured in ("auto", "legacy"):
        assert source_kinds(TrustPolicy(trust_source=configured), list(targets.info), lambda: True) == (
            SIGSTORE,
        )


def test_public_good_legacy_targets_synthesise_its_instance(tmp_path: Path) -> None:
    """Synthesised from the real legacy targets alone: the same Rekor log ID as its trusted root,
    the retired Fulcio root bounded by when it was first seen Expired, the current chain open."""
    targets = _public_good_targets()
    seen_at = datetime(2025, 10, 20, 12, tzinfo=UTC)
    seen = {t.sha256: seen_at for t in legacy_targets(targets.info) if t.expired}
    source, roles = from_legacy(targets, seen, seen_at + timedelta(days=1))
    (log,) = source.trust.transparency_logs
    assert log.log_id == PUBLIC_REKOR and log.base_url == "https://rekor.sigstore.dev"
    windows = sorted((len(ca.subjects), ca.valid_until) for ca in source.trust.certificate_authorities)
    assert windows == [(1, seen_at), (2, None)]
    assert len(source.trust.ctlogs) == 2 and roles["fulcio.crt.pem"] == "legacy-fulcio"
    exported = tmp_path / "trusted_root.json"
    exported.write_bytes(source.trusted_root_json)
    from sigstore.models import TrustedRoot

    assert len(TrustedRoot.from_file(str(exported)).get_fulcio_certs()) == 3  # sigstore-python loads it


def test_expired_record_keeps_first_sightings_and_drops_reactivated() -> None:
    targets = _public_good_targets()
    marked = legacy_targets(targets.info)
    (old,) = [t for t in marked if t.expired]
    first = expired_record({}, marked, MARKED_EXPIRED_AT)
    assert first == {old.sha256: "2024-01-01T00:00:00Z"}
    assert expired_record(first, marked, MARKED_EXPIRED_AT + timedelta(days=30)) == first
    assert expired_record(first, [t for t in marked if not t.expired], MARKED_EXPIRED_AT) == {}


def test_status_of_a_legacy_host_imports_no_verifier(tmp_path: Path) -> None:
    """The synthesised trusted root is parsed with sigstore_models on every read, never loaded
    with sigstore-python there: `trust status` stays as lean as for the other sources."""
    from tests.unit.test_startup_imports import NETWORK_AND_EXTRAS, imported, loaded

    repo = legacy_repository(tmp_path / "legacy-repo")
    url, cache = repo.path.resolve().as_uri(), tmp_path / "cache"
    config = tmp_path / "trust.yaml"
    config.write_text(f"attestor:\n  trust_repo:\n    tuf_url: {url}\n    local_cache_path: {cache}\n")
    settings = load_settings(config, {})
    store = Store.of(settings)
    store.write_anchor(repo.root_bytes(1))
    sync(settings, store)
    done, modules = loaded("--config", str(config), "status", "--json", "--show-keys")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["result"]["sources"] == ["legacy"]
    assert imported(modules, NETWORK_AND_EXTRAS) == []
