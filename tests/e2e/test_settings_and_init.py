"""Configuration precedence, malformed configs, STELLA_* variables and trust anchors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from stella_trust.demo.repository import DemoRepository, service_map, spki_sha256
from tests.conftest import FaultyServer, clean_env, ok
from tests.e2e.conftest import Client

DEAD_URL = "http://127.0.0.1:9"  # discard port: nothing listens


# ---- precedence (in process: pure settings logic) --------------------------------------


def test_malformed_config_via_cli(client: Client) -> None:
    client.config.write_text("attestor:\n  trust_repo:\n    freshness_threshold_days: forever\n")
    result = client.run("status")
    assert result.code == 1
    assert str(client.config) in result.err
    assert "freshness_threshold_days" in result.err
    assert "hint:" in result.err


def test_bad_environment_variable_is_named(client: Client) -> None:
    ok(client.init(sync=False))
    result = client.run("sync", env=clean_env(STELLA_TUF_OFFLINE_MODE="maybe"))
    assert result.code == 1
    assert "environment variable STELLA_TUF_OFFLINE_MODE" in result.err


# ---- STELLA_* variables end to end ---------------------------------------------------------
def test_env_root_url_overrides_config(client: Client, server: FaultyServer) -> None:
    ok(client.init())
    client.set_config(tuf_url=DEAD_URL)
    assert "Repository unreachable" in client.run("sync").err
    server.take_requests()
    ok(client.run("sync", env=clean_env(STELLA_TUF_ROOT_URL=server.url)))
    assert server.take_requests() == ["/metadata/2.root.json", "/metadata/timestamp.json"]


def test_flag_overrides_env(client: Client) -> None:
    result = client.run(
        "init",
        "--tuf-url",
        client.url,
        "--root",
        str(client.root),
        env=clean_env(STELLA_TUF_ROOT_URL=DEAD_URL),
    )
    ok(result)
    assert "sync: updated" in result.out


def test_env_offline_mode_forbids_network(client: Client, server: FaultyServer) -> None:
    ok(client.init())
    server.take_requests()
    result = client.run("sync", env=clean_env(STELLA_TUF_OFFLINE_MODE="1"))
    assert result.code == 1
    assert "offline mode is on" in result.err
    assert server.take_requests() == []
    status = ok(client.run("status", "--json", env=clean_env(STELLA_TUF_OFFLINE_MODE="1"))).json()
    assert status["offline_mode"] is True


def test_env_service_map_file_overrides_repository_map(client: Client, demo: DemoRepository) -> None:
    ok(client.init())
    local = client.home / "local-map.json"
    document = json.loads(service_map(demo.rekor_v2, "rekor-key-v2"))
    document["rekor"]["url"] = "https://rekor.internal.example"
    document["tessera"] = {"url": "https://log.internal.example"}  # unknown service: kept
    local.write_text(json.dumps(document))
    env = clean_env(STELLA_SIGSTORE_SERVICE_MAP=str(local))
    ok(client.run("sync", env=env))
    status = ok(client.run("status", "--json", env=env)).json()
    assert status["service_map"]["source"] == f"file:{local}"
    assert status["endpoints"]["rekor"]["url"] == "https://rekor.internal.example"
    assert status["endpoints"]["rekor"]["log_id"] == spki_sha256(demo.rekor_v2)
    assert status["endpoints"]["tessera"] == {"url": "https://log.internal.example"}


# ---- trust anchors ---------------------------------------------------------------------------
def test_init_without_anchor_is_refused(client: Client) -> None:
    result = client.run("init", "--tuf-url", client.url)
    assert result.code == 2
    assert "without a trust anchor" in result.err and "--root" in result.err
    assert not (client.cache / "anchor.root.json").exists()


def test_init_with_root_sha256(client: Client, demo: DemoRepository) -> None:
    digest = hashlib.sha256(demo.root_path.read_bytes()).hexdigest()
    result = ok(client.run("init", "--tuf-url", client.url, "--root-sha256", digest))
    assert digest in result.out
    assert ok(client.status()).json()["freshness"]["state"] == "fresh"


def test_init_with_wrong_root_sha256_is_refused(client: Client) -> None:
    result = client.run("init", "--tuf-url", client.url, "--root-sha256", "ab" * 32)
    assert result.code == 1
    assert "expected " + "ab" * 32 in result.err
    assert not (client.cache / "anchor.root.json").exists()


def test_trust_on_first_use_warns_with_fingerprint(client: Client, demo: DemoRepository) -> None:
    digest = hashlib.sha256(demo.root_path.read_bytes()).hexdigest()
    result = ok(client.run("init", "--tuf-url", client.url, "--trust-on-first-use", "--no-sync"))
    assert "warning: trusting the root the repository served" in result.err and digest in result.err


def test_reinit_with_other_root_needs_force(client: Client, tmp_path: Path) -> None:
    ok(client.init())
    other = DemoRepository(tmp_path / "other")
    result = client.run("init", "--tuf-url", client.url, "--root", str(other.root_path), "--no-sync")
    assert result.code == 1 and "already trusts a different root" in result.err
    assert ok(client.status()).json()["freshness"]["state"] == "fresh"  # untouched
    ok(client.run("init", "--tuf-url", client.url, "--root", str(other.root_path), "--no-sync", "--force"))
    assert client.run("status").code == 3  # no trust cached for the new anchor yet


def test_root_file_that_is_not_a_root_is_refused(client: Client, demo: DemoRepository) -> None:
    result = client.run(
        "init", "--tuf-url", client.url, "--root", str(demo.repo.metadata_dir / "timestamp.json")
    )
    assert result.code == 1
    assert "is not a valid root" in result.err
