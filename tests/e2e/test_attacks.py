"""Each attack or failure is refused with a clear line, and the cached trust stays usable."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository import generate_signer
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client


def snapshot_of_trust(client: Client) -> dict[str, Any]:
    status = ok(client.status()).json()
    return {
        "versions": {role: v["version"] for role, v in status["metadata"].items()},
        "keys": sorted((k["target"], k["spki_sha256"]) for k in status["keys"]),
        "endpoints": status["endpoints"],
    }


def assert_refused_and_intact(client: Client, before: dict[str, Any], phrase: str) -> None:
    result = client.run("sync")
    assert result.code == 1, result.out + result.err
    first_line = result.err.splitlines()[0]
    assert first_line.startswith("error: ") and phrase in first_line, result.err
    assert "hint:" in result.err
    assert snapshot_of_trust(client) == before  # the old trust still verifies and is served
    status = ok(client.status()).json()
    assert phrase in status["last_error"]


def test_timestamp_rollback_refused(synced: Client, demo: DemoRepository, server: FaultyServer) -> None:
    old_timestamp = (demo.repo.metadata_dir / "timestamp.json").read_bytes()
    demo.repo.resign_timestamp()
    ok(synced.run("sync"))
    before = snapshot_of_trust(synced)
    assert before["versions"]["timestamp"] == 3
    server.inject("/metadata/timestamp.json", "body", old_timestamp)
    assert_refused_and_intact(synced, before, "Rollback refused")


def test_expired_timestamp_refused(synced: Client, demo: DemoRepository) -> None:
    before = snapshot_of_trust(synced)
    demo.repo.resign_timestamp(expires=datetime.now(UTC) - timedelta(hours=1))
    assert_refused_and_intact(synced, before, "TUF metadata expired")


def test_swapped_target_bytes_refused(synced: Client, demo: DemoRepository, server: FaultyServer) -> None:
    before = snapshot_of_trust(synced)
    demo.switch_to_rekor_v2()  # a new service map the client must download
    info = demo.repo.targets.signed.targets["sigstore-services-v1.json"]
    forged = b"x" * info.length  # same length, other bytes
    server.inject("sigstore-services-v1.json", "body", forged)
    assert_refused_and_intact(synced, before, "Length or hash mismatch")


def test_metadata_signed_by_unknown_key_refused(synced: Client, demo: DemoRepository) -> None:
    before = snapshot_of_trust(synced)
    md = demo.repo.timestamp
    md.signed.version += 1
    md.signatures.clear()
    md.sign(generate_signer())
    demo.repo.write()
    assert_refused_and_intact(synced, before, "Signature verification failed")


def test_endless_timestamp_refused_quickly(synced: Client, server: FaultyServer) -> None:
    before = snapshot_of_trust(synced)
    server.inject("/metadata/timestamp.json", "endless")
    started = time.monotonic()
    assert_refused_and_intact(synced, before, "Download exceeded its size limit")
    assert time.monotonic() - started < 15


def test_server_down(synced: Client, server: FaultyServer) -> None:
    before = snapshot_of_trust(synced)
    server.stop()
    assert_refused_and_intact(synced, before, "Repository unreachable")


def test_http_500(synced: Client, server: FaultyServer) -> None:
    before = snapshot_of_trust(synced)
    server.inject("/metadata/timestamp.json", "status", 500)
    assert_refused_and_intact(synced, before, "Repository unreachable: HTTP 500")
    server.heal()
    ok(synced.run("sync"))
    assert ok(synced.status()).json()["last_error"] is None


def test_root_not_signed_by_old_threshold_refused(synced: Client, demo: DemoRepository) -> None:
    """A new root signed only by new keys (no old threshold) must not be walked to."""
    before = snapshot_of_trust(synced)
    repo = demo.repo
    for signer in repo.signers["root"]:
        repo.root.signed.revoke_key(signer.public_key.keyid, "root")
    repo.signers["root"] = [generate_signer()]
    repo.root.signed.add_key(repo.signers["root"][0].public_key, "root")
    repo.root.signed.roles["root"].threshold = 1
    repo.root.signed.version += 1
    repo.root.signatures.clear()
    repo.root.sign(repo.signers["root"][0])  # signed with the new key only
    repo.record_root()
    repo.write()
    assert_refused_and_intact(synced, before, "Signature verification failed")


def test_tampered_cached_target_detected_then_repaired(synced: Client) -> None:
    current = Store(synced.cache).current()
    assert current is not None
    path = current.target_path("rekor-key-v1.pub")
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    result = synced.run("status")
    assert result.code == 3
    assert "target rekor-key-v1.pub: length or hash mismatch" in result.err
    assert ok(synced.run("sync", "--json")).json()["downloaded"] == ["rekor-key-v1.pub"]
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"


def test_tampered_cached_metadata_detected(synced: Client) -> None:
    current = Store(synced.cache).current()
    assert current is not None
    path = current.metadata_dir / "targets.json"
    path.write_bytes(path.read_bytes().replace(b'"length": 178', b'"length": 179', 1))
    result = synced.run("status", "--json")
    assert result.code == 3
    assert "targets: signature verification failed" in result.json()["message"]
    ok(synced.run("sync"))  # the Updater ignores the bad local copy and refetches
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"


def test_forged_anchor_chain_in_cache_detected(synced: Client, demo: DemoRepository) -> None:
    """A root slipped into the cache's history that the anchor never signed is refused."""
    other = DemoRepository(synced.home / "other")
    current = Store(synced.cache).current()
    assert current is not None
    other.rotate("root")
    (current.metadata_dir / "root_history" / "2.root.json").write_bytes(other.repo.root_bytes(2))
    result = synced.run("status")
    assert result.code == 3
    assert "root v2 (by root v1): signature verification failed" in result.err


def test_second_concurrent_sync_waits_or_fails_clearly(synced: Client) -> None:
    synced.set_config(lock_timeout_seconds=0.5)
    store = Store(synced.cache)
    with store.lock(timeout=1):
        result = synced.run("sync")
        assert result.code == 1
        assert f"locked by another writer (pid {__import__('os').getpid()})" in result.err
    ok(synced.run("sync"))

    synced.set_config(lock_timeout_seconds=30)
    runs = [synced.popen("sync", "--force", stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for run in runs:
        _out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"


@pytest.mark.parametrize("when", ["metadata", "target"])
def test_kill_mid_sync_leaves_old_trust(
    synced: Client, demo: DemoRepository, server: FaultyServer, when: str
) -> None:
    before = snapshot_of_trust(synced)
    demo.switch_to_rekor_v2()
    slow = "3.targets.json" if when == "metadata" else "sigstore-services-v1.json"
    server.inject(slow, "slow", 0.05)
    server.take_requests()
    proc = synced.popen("sync", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the server dribbles a byte per 50 ms: from its request on, the sync is mid-transfer
    deadline = time.monotonic() + 60
    while not any(p.endswith(slow) for p in server.requests):
        assert proc.poll() is None and time.monotonic() < deadline, f"no request for {slow}"
        time.sleep(0.02)  # polling interval of the condition above
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert snapshot_of_trust(synced) == before
    server.heal()
    ok(synced.run("sync"))
    after = snapshot_of_trust(synced)
    assert after["endpoints"]["rekor"]["public_key_target"] == "rekor-key-v2.pub"
    leftovers = [p.name for p in (synced.cache / "generations").iterdir() if p.name.startswith(".work-")]
    assert leftovers == []
