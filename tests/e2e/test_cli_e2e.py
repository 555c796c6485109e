"""End-to-end: the real `trust` CLI against a real repository on 127.0.0.1."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import yaml

from stella_trust._internal.store import Store
from stella_trust._internal.timefmt import epoch_ns
from stella_trust._internal.tuf.offline import verify_metadata
from stella_trust.demo.repository import DemoRepository, spki_sha256
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client

EXPECTED_KEYS = {
    "tuf_url",
    "environment",
    "offline_mode",
    "freshness",
    "metadata",
    "last_sync",
    "last_error",
    "targets",
    "keys",
    "certificates",
    "endpoints",
}


def test_init_sync_status_happy_path(client: Client, demo: DemoRepository) -> None:
    init = ok(client.init())
    assert "trusting root v1" in init.out
    assert "sync: updated" in init.out

    status = ok(client.status()).json()
    assert status.keys() >= EXPECTED_KEYS
    assert status["tuf_url"] == client.url
    assert status["freshness"]["state"] == "fresh"
    assert status["metadata"]["root"]["version"] == 1
    assert status["metadata"]["timestamp"]["version"] == 2
    assert status["last_sync"] and status["last_error"] is None
    names = {t["name"] for t in status["targets"]}
    assert names == {"sigstore-services-v1.json", "rekor-key-v1.pub", "rekor-key-v2.pub", "fulcio-chain.pem"}
    by_name = {t["name"]: t for t in status["targets"]}
    assert by_name["rekor-key-v1.pub"]["sha256"] == hashlib.sha256(demo.rekor_v1).hexdigest()
    assert by_name["rekor-key-v1.pub"]["custom"] == {"sigstore": {"usage": "Rekor"}}
    keys = {k["target"]: k for k in status["keys"]}
    assert keys["rekor-key-v1.pub"]["algorithm"] == "ecdsa-p256"
    assert keys["rekor-key-v2.pub"]["algorithm"] == "ed25519"
    assert keys["rekor-key-v1.pub"]["spki_sha256"] == spki_sha256(demo.rekor_v1)
    assert [c["position"] for c in status["certificates"]] == [0, 1]
    assert "demo-fulcio-intermediate" in status["certificates"][0]["subject"]
    rekor = status["endpoints"]["rekor"]
    assert rekor == {
        "url": "https://rekor.sigstore.example",
        "log_id": spki_sha256(demo.rekor_v1),
        "public_key_target": "rekor-key-v1.pub",
    }
    assert status["endpoints"]["fulcio"]["root_cert_target"] == "fulcio-chain.pem"

    text = ok(client.run("status", "--show-keys", "--show-endpoints")).out
    assert "FRESH" in text and "ecdsa-p256" in text and "https://rekor.sigstore.example" in text
    assert "CN=demo-fulcio-root" in text


def test_init_writes_config_section_keeping_other_keys(client: Client) -> None:
    client.config.write_text(yaml.safe_dump({"attestor": {"other": {"x": 1}}, "unrelated": [1, 2]}))
    ok(client.init("--environment", "staging", "--offline", sync=False))
    document = yaml.safe_load(client.config.read_text())
    assert document["unrelated"] == [1, 2]
    assert document["attestor"]["other"] == {"x": 1}
    section = document["attestor"]["trust_repo"]
    assert section["tuf_url"] == client.url
    assert section["pinned_targets"] == ["rekor-key-v1", "rekor-key-v2"]
    assert section["environment"] == "staging"
    assert section["offline_mode"] is True
    assert section["local_cache_path"] == str(client.cache.resolve())


def test_idle_sync_costs_two_requests_and_no_downloads(synced: Client, server: FaultyServer) -> None:
    server.take_requests()
    result = ok(synced.run("sync", "--json")).json()
    assert server.take_requests() == ["/metadata/2.root.json", "/metadata/timestamp.json"]
    assert result["requests"] == 2
    assert result["downloaded"] == []
    assert result["changed"] is False


def test_idle_syncs_leave_state_json_and_status_shows_the_last(synced: Client) -> None:
    """Issue 24 (decision 4's note on state.json): idle `trust sync` runs record their moment as
    state.json's mtime, never rewriting it; `trust status` and `trust doctor` show the last one."""
    state = synced.cache / "state.json"
    written, inode = state.read_bytes(), state.stat().st_ino
    first = ok(synced.status()).json()["last_sync"]
    for _ in range(2):
        started = datetime.now(UTC)
        assert ok(synced.run("sync", "--json")).json()["changed"] is False
        ended = datetime.now(UTC)
    assert (state.read_bytes(), state.stat().st_ino) == (written, inode)
    shown = ok(synced.status()).json()["last_sync"]
    moment = datetime.fromisoformat(shown.replace("Z", "+00:00"))
    assert shown != first and started <= moment <= ended  # the second sync's own moment
    assert state.stat().st_mtime_ns == epoch_ns(moment)
    doctor = ok(synced.run("doctor", "--json")).envelope()["result"]["checks"]
    check = next(entry for entry in doctor if entry["check"] == "sync")
    assert check["state"] == "ok" and f"last successful sync {shown} " in check["detail"]


def test_force_sync_downloads_and_verifies_everything(synced: Client, server: FaultyServer) -> None:
    server.take_requests()
    result = ok(synced.run("sync", "--force", "--json")).json()
    paths = server.take_requests()
    assert "/metadata/2.snapshot.json" in paths and "/metadata/2.targets.json" in paths
    assert len([p for p in paths if p.startswith("/targets/")]) == 4
    assert sorted(result["downloaded"]) == sorted(result["targets"])
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"


def test_stem_names_resolve_to_the_single_extension(synced: Client) -> None:
    status = ok(synced.status()).json()
    pinned = sorted(t["name"] for t in status["targets"] if t["pinned"])
    assert pinned == ["rekor-key-v1.pub", "rekor-key-v2.pub"]
    assert status["service_map"]["source"] == "sigstore-services-v1.json"


def test_ambiguous_stem_names_both_candidates(client: Client, demo: DemoRepository) -> None:
    demo.repo.add_target("rekor-key-v1.pem", demo.rekor_v1)
    demo.repo.publish()
    result = client.init()
    assert result.code == 1
    assert "ambiguous" in result.err
    assert "'rekor-key-v1.pem' and 'rekor-key-v1.pub'" in result.err


def test_unknown_pin_fails_with_close_names(client: Client) -> None:
    result = client.init("--pin", "rekor-key-v3")
    assert result.code == 1
    assert "Unknown target 'rekor-key-v3'" in result.err
    assert "rekor-key-v1.pub" in result.err  # a close name is offered
    assert "hint:" in result.err


def test_environment_override_changes_endpoints(client: Client) -> None:
    ok(client.init("--environment", "staging"))
    status = ok(client.status()).json()
    assert status["environment"] == "staging"
    assert status["endpoints"]["rekor"]["url"] == "https://rekor.sigstage.example"
    assert status["endpoints"]["fulcio"]["url"] == "https://fulcio.sigstage.example"
    text = ok(client.run("status", "--show-endpoints")).out
    assert "Endpoints (environment staging)" in text


def test_unknown_environment_is_refused(client: Client) -> None:
    result = client.init("--environment", "moon")
    assert result.code == 1
    assert "environment 'moon' has no overrides (known: staging)" in result.err


def test_key_rotation_followed_by_status(synced: Client, demo: DemoRepository) -> None:
    demo.switch_to_rekor_v2()
    ok(synced.run("sync"))
    status = ok(synced.status()).json()
    assert status["endpoints"]["rekor"]["public_key_target"] == "rekor-key-v2.pub"
    assert status["endpoints"]["rekor"]["log_id"] == spki_sha256(demo.rekor_v2)
    assert {k["target"] for k in status["keys"]} == {"rekor-key-v1.pub", "rekor-key-v2.pub"}


def test_root_rotation_and_timestamp_key_rotation(synced: Client, demo: DemoRepository) -> None:
    demo.rotate("root")
    ok(synced.run("sync"))
    assert ok(synced.status()).json()["metadata"]["root"]["version"] == 2

    demo.rotate("timestamp")
    ok(synced.run("sync"))
    status = ok(synced.status()).json()
    assert status["metadata"]["root"]["version"] == 3
    assert status["freshness"]["state"] == "fresh"


def test_repository_without_consistent_snapshots(tmp_path: Path) -> None:
    demo = DemoRepository(tmp_path / "plain", consistent_snapshot=False)
    assert not (demo.repo.metadata_dir / "2.snapshot.json").exists()
    with FaultyServer(demo.repo.path) as srv:
        client = Client(home=tmp_path, url=srv.url, root=demo.root_path)
        ok(client.init())
        assert any(p == "/targets/rekor-key-v2.pub" for p in srv.requests)
        assert ok(client.status()).json()["freshness"]["state"] == "fresh"


def test_file_url_repository(tmp_path: Path, demo: DemoRepository) -> None:
    client = Client(home=tmp_path, url=demo.repo.path.as_uri(), root=demo.root_path)
    ok(client.init("--offline"))
    status = ok(client.status()).json()
    assert status["offline_mode"] is True
    assert status["tuf_url"] == demo.repo.path.as_uri()


def test_sync_and_status_without_init(client: Client) -> None:
    result = client.run("status")
    assert result.code == 3
    assert "not initialised" in result.err
    # the init to run names this host's config and cache before the subcommand (issue 20)
    assert f"`trust --config {client.config} --cache-dir {client.cache} init --tuf-url URL" in result.err
    client.set_config(tuf_url=client.url)
    result = client.run("sync")
    assert result.code == 3
    assert "not initialised" in result.err


def test_json_errors_are_objects(client: Client) -> None:
    result = client.status()
    assert result.code == 3
    envelope = result.envelope()
    assert envelope["error"]["exit_code"] == 3 and envelope["command"] == "status"
    assert envelope["ok"] is False and "not initialised" in envelope["error"]["message"]


def test_help_has_examples() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "stella_trust", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "Examples:" in out and "Exit codes" in out
    for command in ("init", "sync", "status", "demo"):
        assert command in out


def test_demo_command_runs_offline() -> None:
    import subprocess
    import sys

    from tests.conftest import clean_env

    done = subprocess.run(
        [sys.executable, "-m", "stella_trust", "demo"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "FRESH" in done.stdout
    assert "the server saw 2 requests: /metadata/2.root.json, /metadata/timestamp.json" in done.stdout
    assert "rekor-key-v2.pub" in done.stdout


def test_delegated_targets_are_found_and_verified(tmp_path: Path) -> None:
    demo = DemoRepository(tmp_path / "repo")
    demo.repo.add_delegated_role("registry.npmjs.org", ["registry.npmjs.org/*"])
    demo.repo.add_delegated_target("registry.npmjs.org", "registry.npmjs.org/keys.json", b'{"k": 1}')
    demo.repo.publish()
    with FaultyServer(demo.repo.path) as srv:
        client = Client(home=tmp_path, url=srv.url, root=demo.root_path)
        ok(client.init("--pin", "registry.npmjs.org/keys.json"))
        status = ok(client.status()).json()
        assert "registry.npmjs.org/keys.json" in {t["name"] for t in status["targets"]}
        store = Store(client.cache)
        current = store.current()
        assert current is not None
        verified = verify_metadata(current.metadata_dir, store.read_anchor())
        assert "registry.npmjs.org/keys.json" in verified.target_names()
        role_file = current.metadata_dir / "registry.npmjs.org.json"
        role_file.write_bytes(role_file.read_bytes().replace(b'"version": 2', b'"version": 9'))
        result = client.run("status")
        assert result.code == 3 and "role registry.npmjs.org" in result.err
