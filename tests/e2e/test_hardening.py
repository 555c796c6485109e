"""Regressions for review findings: deadlines, fast-forward recovery, rollback floors,
delegated expiry, scratch files, a damaged `current`."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client


def test_fast_forward_recovery_after_timestamp_key_rotation(synced: Client, demo: DemoRepository) -> None:
    repo = demo.repo
    repo.timestamp.signed.version = 999
    repo.resign_timestamp()  # v1000, as an attacker with the old timestamp key could
    ok(synced.run("sync"))
    assert ok(synced.status()).json()["metadata"]["timestamp"]["version"] == 1000
    repo.timestamp.signed.version = 1
    demo.rotate("timestamp")  # recovery: new key, versions restart
    ok(synced.run("sync"))
    status = ok(synced.status()).json()
    assert status["metadata"]["timestamp"]["version"] == 2
    assert status["metadata"]["root"]["version"] == 2


def test_no_rollback_through_a_damaged_cache_with_force(
    synced: Client, demo: DemoRepository, server: FaultyServer
) -> None:
    old_timestamp = (demo.repo.metadata_dir / "timestamp.json").read_bytes()  # pins snapshot v2
    demo.switch_to_rekor_v2()
    ok(synced.run("sync"))
    current = Store(synced.cache).current()
    assert current is not None
    snapshot = current.metadata_dir / "snapshot.json"
    snapshot.write_bytes(snapshot.read_bytes().replace(b'"version": 3', b'"version": 4', 1))
    server.inject("/metadata/timestamp.json", "body", old_timestamp)  # a replaying mirror
    result = synced.run("sync", "--force")
    assert result.code == 1
    assert "Rollback refused: timestamp v2 < v3" in result.err
    server.heal()
    ok(synced.run("sync"))
    status = ok(synced.status()).json()
    assert status["endpoints"]["rekor"]["public_key_target"] == "rekor-key-v2.pub"


def test_status_refuses_a_cache_rolled_back_on_disk(synced: Client, demo: DemoRepository) -> None:
    store = Store(synced.cache)
    first = store.current()
    assert first is not None
    demo.switch_to_rekor_v2()
    ok(synced.run("sync"))
    os.unlink(synced.cache / "current")
    os.symlink(os.path.join("generations", first.path.name), synced.cache / "current")
    result = synced.run("status")
    assert result.code == 3
    assert "older trust than this host already committed" in result.err
    ok(synced.run("sync"))
    assert ok(synced.status()).json()["metadata"]["targets"]["version"] == 3


def test_delegated_role_expiry_counts_for_freshness(tmp_path: Path) -> None:
    demo = DemoRepository(tmp_path / "repo")
    demo.repo.add_delegated_role("team", ["team/*"], lifetime=timedelta(hours=1))
    demo.repo.add_delegated_target("team", "team/key.pub", demo.rekor_v1)
    demo.repo.publish()
    with FaultyServer(demo.repo.path) as srv:
        client = Client(home=tmp_path, url=srv.url, root=demo.root_path)
        ok(client.init("--pin", "team/key.pub"))
    settings = load_settings(client.config)
    view = load_view(settings, Store(client.cache))
    assert view.freshness.earliest_role == "team"
    later = datetime.now(UTC) + timedelta(hours=2)
    assert load_view(settings, Store(client.cache), later).freshness.state == "grace"


def test_dot_names_cannot_alias_scratch_files(
    tmp_path: Path, demo: DemoRepository, server: FaultyServer
) -> None:
    demo.repo.add_target("extra.txt", b"one")
    demo.repo.add_target(".extra.txt.part", b"two")
    demo.repo.publish()
    client = Client(home=tmp_path / "h", url=server.url, root=demo.root_path)
    client.home.mkdir()
    ok(client.init("--pin", "extra.txt,.extra.txt.part"))
    before = ok(client.status()).json()["targets"]
    demo.repo.add_target("extra.txt", b"ONE")
    demo.repo.publish()
    server.inject("extra.txt", "body", b"XYZ")  # forged bytes of the new length
    assert client.run("sync").code == 1
    assert ok(client.status()).json()["targets"] == before
