"""The legacy Sigstore targets end to end (decision 21): a private instance's TUF repository in the
legacy layout (every key and chain of the real staging instance as its own target, marked with
`{"sigstore": {"usage", "status"}}`, no trusted_root.json: tests/legacy_repo.py), served on
127.0.0.1 and driven through the real CLI.

- `trust init` with `trust_source: auto` detects it and records `legacy`;
- `status` shows the targets by usage and every window; `export --format trusted-root` is a
  trusted root sigstore-python loads; `trust verify` gives every real staging bundle its
  expected outcome, online and on an air-gapped host after an import;
- a Rekor key marked Expired refuses entries integrated after the host first saw it so, and
  keeps refusing them after later syncs;
- a publication that adds trusted_root.json moves the host to `sigstore`, and it stays synced.

The public-good repository (which publishes both trusted_root.json and marked legacy targets)
still resolves to `sigstore` under `auto`: test_sigstore_native.py
`test_public_good_with_nothing_but_url_and_anchor`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stella_trust.repository import Repository
from tests.conftest import FaultyServer, clean_env, ok, refused
from tests.e2e.conftest import Client
from tests.legacy_repo import REKOR_V1_LOG_ID, STAGING, legacy_repository, mark_rekor

CASES: list[dict[str, str]] = json.loads((STAGING / "cases.json").read_text())
LEGACY_ROLES = {"legacy-rekor", "legacy-fulcio", "legacy-ctfe", "legacy-tsa"}

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")


@pytest.fixture
def legacy_repo(tmp_path: Path) -> Repository:
    return legacy_repository(tmp_path / "legacy-repository")


@pytest.fixture
def legacy_host(tmp_path: Path, legacy_repo: Repository) -> Iterator[Client]:
    with FaultyServer(legacy_repo.path) as server:
        home = tmp_path / "host"
        home.mkdir()
        yield Client(home=home, url=server.url, root=legacy_repo.metadata_dir / "1.root.json")


def _init(host: Client) -> dict[str, Any]:
    init = ok(host.run("init", "--tuf-url", host.url, "--root", str(host.root), "--json"))
    document: dict[str, Any] = init.json()
    return document


def _verify(host: Client, case: dict[str, str]) -> list[str]:
    return [
        "verify",
        "--bundle",
        str(STAGING / "bundles" / case["bundle"]),
        "--certificate-identity",
        case["identity"],
        "--certificate-oidc-issuer",
        case["issuer"],
        str(STAGING / "bundles" / case["artifact"]),
    ]


def _case(bundle: str) -> dict[str, str]:
    return next(c for c in CASES if c["bundle"] == bundle and c["expect"] == "ok")


def _verify_every_case(host: Client) -> None:
    """Every staging case through the CLI, two processes at a time."""
    for start in range(0, len(CASES), 2):
        batch = [
            (case, host.popen(*_verify(host, case), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            for case in CASES[start : start + 2]
        ]
        for case, process in batch:
            out, err = process.communicate(timeout=60)
            expected = 0 if case["expect"] == "ok" else 1
            assert process.returncode == expected, f"{case['note']}: exit {process.returncode}\n{out}{err}"
            if expected == 0:
                assert out.startswith("verified: sha256:"), case["note"]
            else:
                assert err.startswith("error: ") and err.count("\n") <= 2, case["note"]


@pytest.mark.slow
def test_auto_detects_legacy_shows_it_exports_it_and_verifies_every_staging_bundle(
    tmp_path: Path, legacy_host: Client
) -> None:
    from sigstore.models import ClientTrustConfig, TrustedRoot

    init = _init(legacy_host)
    assert init["sync"]["sources"] == ["legacy"]
    assert "artifact.pub" not in init["sync"]["targets"]  # usage Unknown: not trust material
    config = yaml.safe_load(legacy_host.config.read_text())["attestor"]["trust_repo"]
    assert config["trust_source"] == "legacy"
    status = ok(legacy_host.status()).json()
    assert status["sources"] == ["legacy"]
    assert {t["role"] for t in status["targets"]} == LEGACY_ROLES
    rekor = next(t for t in status["targets"] if t["name"] == "rekor.pub")
    assert rekor["custom"]["sigstore"]["usage"] == "Rekor"
    logs = {log["base_url"]: log for log in status["sigstore"]["transparency_logs"]}
    assert logs["https://rekor.sigstage.dev"]["log_id"] == REKOR_V1_LOG_ID
    assert logs["https://log2025-alpha1.rekor.sigstage.dev"]["rekor_version"] == 2
    assert status["endpoints"]["rekor"]["public_key_target"] == "rekor.pub"
    text = ok(legacy_host.run("status", "--show-keys")).out
    assert "legacy-rekor" in text and "legacy-tsa" in text and "retired" in text  # the Expired CT log
    rows = ok(legacy_host.run("keys", "--json")).json()["keys"]
    sources = {(row["kind"], row["source"]) for row in rows if row["in_trusted_root"]}
    assert {("rekor", "rekor.pub"), ("fulcio", "fulcio_v1.crt.pem"), ("tsa", "tsa_root.crt.pem")} <= sources
    exported = tmp_path / "trusted_root.json"
    ok(legacy_host.run("export", "--format", "trusted-root", "--out", str(exported)))
    assert len(TrustedRoot.from_file(str(exported)).get_fulcio_certs()) == 2  # sigstore-python's loader
    config_file = tmp_path / "trust_config.json"
    ok(legacy_host.run("export", "--format", "client-trust-config", "--out", str(config_file)))
    assert ClientTrustConfig.from_json(config_file.read_text()).trusted_root is not None
    _verify_every_case(legacy_host)
    ok(legacy_host.run("sync"))  # the next sync is idle and keeps the source
    assert ok(legacy_host.status()).json()["sources"] == ["legacy"]


@needs_faketime
def test_an_expired_rekor_key_refuses_entries_after_its_window(
    legacy_host: Client, legacy_repo: Repository
) -> None:
    _init(legacy_host)
    ok(legacy_host.run(*_verify(legacy_host, _case("bundle_v3.txt.sigstore.json"))))
    mark_rekor(legacy_repo, "Expired")
    legacy_host.clock = "2024-01-01 00:00:00"  # the host first sees the mark then
    ok(legacy_host.run("sync"))
    legacy_host.clock = None
    # integrated 2024-04-02: after the window; bundle.txt (2023-04-26) is inside it
    refused(
        legacy_host.run(*_verify(legacy_host, _case("bundle_v3.txt.sigstore.json"))),
        1,
        "outside the validity of its log",
        "to 2024-01-01T00:00",  # the moment of that sync (faketime's clock runs on from it)
    )
    ok(legacy_host.run(*_verify(legacy_host, _case("bundle.txt.sigstore.json"))))
    # after: a later sync keeps the first sighting, the refusal stands, status says why
    ok(legacy_host.run("sync"))
    refused(legacy_host.run(*_verify(legacy_host, _case("bundle_v3.txt.sigstore.json"))), 1, "2024-01-01")
    logs = {log["base_url"]: log for log in ok(legacy_host.status()).json()["sigstore"]["transparency_logs"]}
    assert logs["https://rekor.sigstage.dev"]["status"] == "retired"
    assert logs["https://rekor.sigstage.dev"]["valid_until"].startswith("2024-01-01T00:00")


def test_a_publication_adding_trusted_root_json_switches_the_source(
    legacy_host: Client, legacy_repo: Repository
) -> None:
    _init(legacy_host)
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        legacy_repo.add_target(name, (STAGING / name).read_bytes())
    legacy_repo.publish()
    switched = ok(legacy_host.run("sync", "--json")).json()
    assert switched["sources"] == ["sigstore"]
    assert "trust sources changed: legacy -> sigstore" in switched["changes"]
    assert set(switched["targets"]) == {"trusted_root.json", "signing_config.v0.2.json"}
    # steady state: the next sync is idle, status and verify use the published trusted root
    idle = ok(legacy_host.run("sync", "--json")).json()
    assert idle["changed"] is False and idle["sources"] == ["sigstore"]
    assert ok(legacy_host.status()).json()["sources"] == ["sigstore"]
    ok(legacy_host.run(*_verify(legacy_host, _case("bundle_v3.txt.sigstore.json"))))


def test_an_airgapped_host_imports_legacy_trust_and_verifies(tmp_path: Path, legacy_host: Client) -> None:
    _init(legacy_host)
    bundle = tmp_path / "trust.tar.zst"
    ok(legacy_host.run("snapshot", "export", "--out", str(bundle)))
    home = tmp_path / "airgap"
    home.mkdir()
    env = clean_env(STELLA_TUF_OFFLINE_MODE="1")
    host = Client(home=home, url=(tmp_path / "nowhere").as_uri(), root=legacy_host.root, env=env)
    ok(host.run("init", "--tuf-url", host.url, "--offline", "--root", str(host.root), "--no-sync"))
    ok(host.run("import", str(bundle), "--offline"))
    assert ok(host.status()).json()["sources"] == ["legacy"]
    ok(host.run(*_verify(host, _case("bundle_v3.txt.sigstore.json"))))
    ok(host.run(*_verify(host, _case("staging-rekor-v2.txt.sigstore.json"))))  # Rekor v2 + TSA
