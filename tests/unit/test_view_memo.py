"""open_trust() remembers a verification under the identity of every file it read (issue
13): an unchanged cache is not re-verified, and any change to a verified file, the state,
the anchor or the config makes the next read verify again from the anchor."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stella_trust import api
from stella_trust._internal import reader
from stella_trust._internal.hostpolicy import parts_of, view_of
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.policy.build import view_at
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.api import TrustWatcher
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import CacheVerificationError, StaleTrustError
from stella_trust.repository import Repository
from tests.unit.simulator import BASE_URL, RepositoryFetcher


@pytest.fixture
def config(
    tmp_path: Path, host: tuple[TrustRepoSettings, Store], simulated: tuple[DemoRepository, RepositoryFetcher]
) -> Path:
    settings, store = host
    demo, fetcher = simulated
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=fetcher)
    path = tmp_path / "trust.yaml"
    section = {
        "tuf_url": BASE_URL,
        "local_cache_path": str(settings.local_cache_path),
        "pinned_targets": ["rekor-key-v2"],
    }
    path.write_text(yaml.safe_dump({"attestor": {"trust_repo": section}}))
    return path


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setattr(api, "_PROCESS", VerificationMemo())  # a fresh process's memory
    calls: list[Path] = []
    real = reader.verify_generation

    def counting(generation: object, *args: object, **kwargs: object) -> object:
        calls.append(generation.path)  # type: ignore[attr-defined]
        return real(generation, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reader, "verify_generation", counting)
    return calls


def test_an_unchanged_cache_is_verified_once(config: Path, verifications: list[Path]) -> None:
    first = api.open_trust(config_path=config)
    second = api.open_trust(config_path=config)
    assert len(verifications) == 1
    assert first.roles == second.roles and second.freshness.state == "fresh"


def test_a_target_edited_in_place_with_its_mtime_restored_is_caught(
    config: Path, verifications: list[Path], host: tuple[TrustRepoSettings, Store]
) -> None:
    api.open_trust(config_path=config)
    _, store = host
    target = next((store.current().path / "targets").iterdir())  # type: ignore[union-attr]
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    with target.open("r+b") as handle:  # same inode, same size
        handle.write(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back; ctime cannot be
    with pytest.raises(CacheVerificationError):
        api.open_trust(config_path=config)
    assert len(verifications) == 2


def test_new_state_or_a_new_generation_verifies_again(
    config: Path,
    verifications: list[Path],
    host: tuple[TrustRepoSettings, Store],
    simulated: tuple[DemoRepository, RepositoryFetcher],
) -> None:
    settings, store = host
    demo, fetcher = simulated
    api.open_trust(config_path=config)
    store.write_state(store.read_state())  # rewritten: a new inode
    api.open_trust(config_path=config)
    assert len(verifications) == 2
    demo.rotate("timestamp")  # a changed repository: sync commits a new generation
    sync(settings, store, fetcher=fetcher)
    view = api.open_trust(config_path=config)
    assert len(verifications) == 3 and verifications[-1] == store.current().path  # type: ignore[union-attr]
    assert view.roles["root"].version == 2


def test_an_edited_config_is_read_again(config: Path, verifications: list[Path]) -> None:
    api.open_trust(config_path=config)
    document = yaml.safe_load(config.read_text())
    document["attestor"]["trust_repo"]["environment"] = "staging"
    config.write_text(yaml.safe_dump(document))
    assert api.open_trust(config_path=config).environment == "staging"


def test_a_watcher_rebuilds_only_when_the_trust_changed(
    config: Path,
    verifications: list[Path],
    host: tuple[TrustRepoSettings, Store],
    simulated: tuple[DemoRepository, RepositoryFetcher],
) -> None:
    settings, store = host
    demo, fetcher = simulated
    watcher = TrustWatcher(config_path=config)
    first = watcher.view()
    assert not watcher.changed and watcher.wait_for_change(0) is None
    watcher.view()
    assert not watcher.changed and len(verifications) == 1  # polls are memo look-ups
    demo.switch_to_rekor_v2()  # the agent commits new trust
    sync(settings, store, fetcher=fetcher)
    changed = watcher.wait_for_change(5, interval=0.01)
    assert changed is not None and watcher.changed and len(verifications) == 2
    assert changed.roles["targets"].version > first.roles["targets"].version
    watcher.view()
    assert not watcher.changed  # a change is reported once


def test_a_watcher_refuses_a_cache_edited_under_it(
    config: Path, verifications: list[Path], host: tuple[TrustRepoSettings, Store]
) -> None:
    _, store = host
    watcher = TrustWatcher(config_path=config)
    watcher.view()
    target = next((store.current().path / "targets").iterdir())  # type: ignore[union-attr]
    target.write_bytes(target.read_bytes() + b"\n")
    with pytest.raises(CacheVerificationError):
        watcher.view()


def test_a_remembered_view_is_judged_at_every_calls_now(config: Path, verifications: list[Path]) -> None:
    first = api.open_trust(config_path=config)
    later = first.at + timedelta(days=3650)
    with pytest.raises(StaleTrustError):
        api.open_trust(config_path=config, now=later)
    judged = api.open_trust(config_path=config, now=later, allow_stale=True)
    assert judged.at == later and judged.freshness.state == "stale" and len(verifications) == 1


@pytest.mark.parametrize("kind", ["service-map", "sigstore"])
def test_view_at_is_build_view_at_that_time(tmp_path: Path, kind: str) -> None:
    """The shortcut must give exactly the view a full build gives, at any time (validity
    windows of logs and services included)."""
    staging = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
    if kind == "service-map":
        repo = DemoRepository(tmp_path / "repository").repo
        pins = ["rekor-key-v2"]
    else:
        repo = Repository.create(tmp_path / "repository")
        for name in ("trusted_root.json", "signing_config.v0.2.json"):
            repo.add_target(name, (staging / name).read_bytes())
        repo.publish()
        pins = []
    settings = load_settings(
        tmp_path / "absent.yaml",
        {"tuf_url": BASE_URL, "local_cache_path": tmp_path / "cache", "pinned_targets": pins},
    )
    store = Store.of(settings)
    store.write_anchor(repo.root_bytes(1))
    sync(settings, store, fetcher=RepositoryFetcher(repo))
    verified, state = reader.verified_current_with_state(store)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    parts = parts_of(verified, settings, state, start)
    for days in (0, 200, 500, 700, 1000, 4000):
        now = start + timedelta(days=days)
        assert view_at(parts, now) == view_of(verified, settings, state, now), days


def test_no_module_in_internal_keeps_a_cache_of_its_own() -> None:
    """Everything a process remembers lives in a VerificationMemo a caller holds (one eviction
    rule, one `forget`): no functools cache decorator and no `global` rebinding in `_internal/`."""
    import ast

    import stella_trust._internal as internal

    found: list[str] = []
    for path in sorted(Path(internal.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Global):
                found.append(f"{path.name}:{node.lineno} global {', '.join(node.names)}")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    if name in ("cache", "lru_cache"):
                        found.append(f"{path.name}:{node.lineno} @{name} {node.name}")
    assert found == []
