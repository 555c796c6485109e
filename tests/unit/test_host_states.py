"""Host states after an event (issue 20): every refusal keeps the last good trust, and the
next good publication heals the host with no human action. Each test checks the event and
the syncs, reads and restarts after it (docs/design.md, decision 16 and "Host states")."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path

import pytest
from securesystemslib.signer import Signature, SSlibKey

from stella_trust._internal.bundle.export import export_archive
from stella_trust._internal.bundle.importer import import_bundle
from stella_trust._internal.reader import load_view, previous_generation
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import CACHE_DIR_MODE, CACHE_FILE_MODE, Store, generation_sequence
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import (
    HELD_TRUST_UNCHANGED,
    NO_TRUST_YET,
    MetadataExpiredError,
    UnknownTargetError,
    VerificationError,
)
from stella_trust.repository import Repository
from tests.unit.simulator import BASE_URL, Host, RepositoryFetcher, Simulated, synced

PIN = "rekor-key-v2"  # the host fixture pins it


def fresh_sync(host: Host, repo: Repository) -> object:
    settings, store = host
    return sync(settings, store, fetcher=RepositoryFetcher(repo))


def restarted(host: Host) -> Host:
    """The same host after a restart: settings and store built again from disk."""
    settings, store = host
    return settings.model_copy(), Store(store.root, store.anchor_sha256)


# ---- retired pins ---------------------------------------------------------------------------


def test_a_retired_pin_stays_retired_for_every_later_sync_and_is_held_again_when_relisted(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    data = demo.repo.target_data[f"{PIN}.pub"]
    demo.repo.remove_target(f"{PIN}.pub")
    demo.repo.publish()
    first = sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert first.changed and first.retired_pins == (PIN,)
    for _ in range(5):  # the day after, and every day after that (was: Unknown target)
        host = restarted(host)
        later = sync(*host, fetcher=RepositoryFetcher(demo.repo))
        assert not later.changed and later.retired_pins == (PIN,)
        view = load_view(*host)
        assert view.usable and view.retired_pins == (PIN,)
    demo.repo.add_target(f"{PIN}.pub", data)  # listed again upstream: held again
    demo.repo.publish()
    back = sync(*host, fetcher=RepositoryFetcher(demo.repo))
    assert back.changed and back.retired_pins == () and f"{PIN}.pub" in back.targets
    assert load_view(*host).missing_pins == () and host[1].read_state().retired_pins == []


def test_a_pin_that_never_existed_is_still_an_error_after_a_retirement(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.repo.remove_target(f"{PIN}.pub")
    demo.repo.publish()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    typo = settings.model_copy(update={"pinned_targets": [PIN, "rekor-key-v9"]})
    with pytest.raises(UnknownTargetError, match="rekor-key-v9"):
        sync(typo, store, fetcher=RepositoryFetcher(demo.repo))
    assert load_view(settings, store).usable  # the refusal kept the held trust


def test_a_bundle_fed_host_retires_a_pin_and_keeps_importing(
    host: Host, simulated: Simulated, tmp_path: Path
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    offline = offline_host(tmp_path / "air", demo)
    import_bundle(*offline, Path(export_archive(settings, store, tmp_path / "1.tar.zst").path))
    demo.repo.remove_target(f"{PIN}.pub")
    for number in range(2, 5):
        demo.repo.publish()
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
        bundle = Path(export_archive(settings, store, tmp_path / f"{number}.tar.zst").path)
        summary = import_bundle(*offline, bundle)
        assert summary.changed and any("retired by the repository" in w for w in summary.warnings)
        view = load_view(*offline)
        assert view.usable and view.retired_pins == (PIN,) and view.roles["targets"].version == number + 1


def offline_host(home: Path, demo: DemoRepository) -> Host:
    settings = load_settings(
        home / "absent.yaml",
        {"local_cache_path": home / "cache", "pinned_targets": [PIN], "offline_mode": True},
    )
    store = Store.of(settings)
    store.write_anchor(demo.repo.root_bytes(1))
    return settings, store


# ---- roots we refuse are never kept -------------------------------------------------------------


def publish_root_with_twin_timestamp_key(repo: Repository) -> None:
    """A validly signed root v+1 listing the timestamp key twice with threshold 2: python-tuf
    counts keyids and accepts it; our distinct-key rule refuses it (one key meets 2)."""
    key = repo.signers["timestamp"][0].public_key
    twin = SSlibKey("ab" * 32, key.keytype, key.scheme, dict(key.keyval))
    repo.root.signed.add_key(twin, "timestamp")
    repo.root.signed.roles["timestamp"].threshold = 2
    repo.root.signed.version += 1
    repo.root.signatures.clear()
    for signer in repo.signers["root"]:
        repo.root.sign(signer, append=True)
    repo.record_root()
    repo.sign_snapshot_and_timestamp()
    first = repo.timestamp.signatures[key.keyid]
    repo.timestamp.signatures[twin.keyid] = Signature(twin.keyid, first.signature)
    repo.write()


def publish_fixed_root(repo: Repository) -> None:
    """The operator's fix: root v+1 without the twin, threshold 1 again."""
    repo.root.signed.revoke_key("ab" * 32, "timestamp")
    repo.root.signed.roles["timestamp"].threshold = 1
    repo.root.signed.version += 1
    repo.root.signatures.clear()
    for signer in repo.signers["root"]:
        repo.root.sign(signer, append=True)
    repo.record_root()
    repo.sign_snapshot_and_timestamp()
    repo.write()


def test_a_refused_root_is_never_kept_and_the_next_good_root_heals_the_host(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    publish_root_with_twin_timestamp_key(demo.repo)
    for _ in range(5):
        with pytest.raises(VerificationError, match="lists the same key twice") as refused:
            sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
        assert refused.value.exit_code == 1  # the repository's fault, not an unusable host
        assert HELD_TRUST_UNCHANGED in refused.value.hint
        assert store.committed_roots() == []  # nothing refused is persisted
        view = load_view(settings, store)
        assert view.usable and view.roles["root"].version == 1  # the last good trust is served
    publish_fixed_root(demo.repo)
    healed = sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert healed.changed and healed.versions["root"] == 3
    for _ in range(5):
        assert not sync(settings, store, fetcher=RepositoryFetcher(demo.repo)).changed
        assert load_view(settings, store).roles["root"].version == 3


def test_a_refused_root_kept_by_an_earlier_release_is_dropped_by_the_next_sync(
    host: Host, simulated: Simulated
) -> None:
    """Hosts already bricked by the old behaviour (a refused root under <cache>/roots) heal
    at their next sync, before the repository publishes anything new."""
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    publish_root_with_twin_timestamp_key(demo.repo)
    store.commit_roots({2: demo.repo.root_bytes(2)})  # what the old release kept
    with pytest.raises(VerificationError):
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert store.committed_roots() == []
    assert load_view(settings, store).usable


def test_on_a_fresh_host_an_expired_repository_keeps_nothing_and_says_so(tmp_path: Path, host: Host) -> None:
    settings, store = host
    past = datetime.now(UTC) - timedelta(days=30)
    demo = DemoRepository(tmp_path / "repo", now=past)
    demo.rotate("root", now=past)
    store.write_anchor(demo.repo.root_bytes(1))
    with pytest.raises(MetadataExpiredError) as expired:
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert store.committed_roots() == [] and store.current() is None
    hint = expired.value.hint
    assert NO_TRUST_YET in hint and "cached trust" not in hint
    assert "timedatectl" in hint  # the host's clock is the other cause
    assert "`trust repo" in hint  # and who renews what expired


def test_an_expired_timestamp_on_a_host_holding_trust_says_what_is_still_served(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.repo.resign_timestamp(expires=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(MetadataExpiredError) as expired:
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    hint = expired.value.hint
    assert (
        "`trust repo bump-online`" in hint
        and "cached trust is unchanged and usable until it turns stale" in hint
    )
    assert load_view(settings, store).usable
    demo.repo.resign_timestamp()  # the timer runs again: the host heals by itself
    assert sync(settings, store, fetcher=RepositoryFetcher(demo.repo)).changed


def test_a_skewed_clock_is_named_instead_of_the_operator(tmp_path: Path, host: Host) -> None:
    """Expired by this host's clock, valid by the server's Date header: the clock is at fault."""
    settings, store = host
    local = float(int(time.time()))  # one instant for both clocks: building the repository
    past = datetime.fromtimestamp(local, UTC) - timedelta(days=30)  # takes seconds under load
    demo = DemoRepository(tmp_path / "repo", now=past)
    store.write_anchor(demo.repo.root_bytes(1))
    fetcher = RepositoryFetcher(demo.repo)
    fetcher.server_clock = (local, formatdate(past.timestamp(), usegmt=True))
    with pytest.raises(MetadataExpiredError, match="this host's clock, which is 30 days ahead") as skewed:
        sync(settings, store, fetcher=fetcher)
    assert "fix this host's clock" in skewed.value.hint and "bump-online" not in skewed.value.hint


# ---- sync --force, generations -----------------------------------------------------------------


def test_a_forced_sync_that_finds_nothing_new_reports_no_change(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    current = store.current()
    forced = sync(settings, store, force=True, fetcher=RepositoryFetcher(demo.repo))
    assert not forced.changed and forced.changes == () and len(forced.downloaded) == 4  # re-fetched
    assert current is not None and store.current() is not None
    assert store.current().path == current.path  # type: ignore[union-attr]


def test_generations_order_by_commit_sequence_whatever_the_clock(
    host: Host, simulated: Simulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    monkeypatch.setattr(time, "time_ns", lambda: 0)  # a clock stepped back (or stuck)
    monkeypatch.setattr(time, "time", lambda: 0.0)
    for _ in range(3):
        demo.repo.publish()
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
        current = store.current()
        assert current is not None
        previous = previous_generation(store, current)
        assert previous is not None
        assert generation_sequence(previous.path.name) == (generation_sequence(current.path.name) or 0) - 1


def test_a_generation_named_by_an_older_release_still_orders_first(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    current = store.current()
    assert current is not None
    old_style = store.generations_dir / f"{time.time_ns()}-abcdef"  # <ns at sync start>-<random>
    os.rename(current.path, old_style)
    os.unlink(store.current_link)
    os.symlink(f"generations/{old_style.name}", store.current_link)
    demo.repo.publish()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    newest = store.current()
    assert newest is not None and previous_generation(store, newest) is not None
    assert previous_generation(store, newest).path == old_style  # type: ignore[union-attr]


# ---- readers' access ---------------------------------------------------------------------------


def modes(root: Path) -> dict[str, int]:
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(Path(directory, name))
            if not stat.S_ISLNK(st.st_mode) and not name.startswith(".") and ".spare" not in directory:
                found[str(Path(directory, name).relative_to(root))] = stat.S_IMODE(st.st_mode)
    return found


def test_every_cached_file_is_group_readable_and_nothing_more(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    demo.repo.publish()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))  # python-tuf writes its files 0600
    found = modes(store.root)
    assert found, "nothing cached"
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (CACHE_DIR_MODE if (store.root / name).is_dir() else CACHE_FILE_MODE)
    }
    assert wrong == {}
    assert stat.S_IMODE(store.root.stat().st_mode) == CACHE_DIR_MODE


def test_a_cache_written_before_the_rule_is_put_right_by_the_next_writer(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    for path in store.root.rglob("*"):  # what python-tuf and a 0077 umask left behind
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))  # an idle sync: nothing new
    assert set(modes(store.root).values()) == {CACHE_DIR_MODE, CACHE_FILE_MODE}


def test_settings_say_which_hosts_take_trust_only_from_bundles(tmp_path: Path) -> None:
    def kind(**values: object) -> bool:
        return load_settings(tmp_path / "absent.yaml", {"local_cache_path": tmp_path, **values}).bundle_only

    assert kind() and kind(tuf_url=BASE_URL, offline_mode=True)
    assert not kind(tuf_url=BASE_URL) and not kind(tuf_url="file:///media/usb", offline_mode=True)


def test_the_view_is_read_only_and_its_last_sync_a_datetime(host: Host, simulated: Simulated) -> None:
    """An attestor holds a TrustView for a long time: its mappings cannot be edited under
    it, and `last_sync` is a moment like `at` (the JSON keeps state.json's exact string)."""
    from types import MappingProxyType

    from stella_trust._internal.reader import load_view

    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    view = load_view(settings, store)
    assert isinstance(view.roles, MappingProxyType) and isinstance(view.source, MappingProxyType)
    with pytest.raises(TypeError):
        view.roles["timestamp"] = view.roles["root"]  # type: ignore[index]
    with pytest.raises(TypeError):
        view.source["url"] = "http://elsewhere"  # type: ignore[index]
    recorded = store.read_state().last_sync
    assert view.last_sync is not None and view.last_sync.tzinfo is not None
    assert view.to_json()["last_sync"] == recorded
