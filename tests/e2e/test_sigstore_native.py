"""Sigstore-native trust end to end, on real Sigstore material (../shared/fixtures).

- the public-good TUF repository as its CDN served it in 2025-10 (real signatures), synced
  with nothing but the URL and an anchor, under faketime at the fixture's sign-off time;
- staging's trusted_root.json published in a repository we build: export for other
  verifiers, `trust verify` of every real staging bundle (path and digest), online and on
  an air-gapped host after a bundle import, and the refusals.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stella_trust._internal.store import Store
from stella_trust.repository import Repository
from stella_trust.repository.serve import RepositoryServer
from tests.conftest import FaultyServer, clean_env, ok, refused
from tests.e2e.conftest import Client

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore"
PUBLIC_GOOD = FIXTURES / "public-good-2025-10"
STAGING = FIXTURES / "staging"
SIGN_OFF = "2025-10-20 12:00:00"
REKOR_LOG_ID = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
CASES: list[dict[str, str]] = json.loads((STAGING / "cases.json").read_text())

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")


# ---- the public-good repository -------------------------------------------------------
@pytest.fixture(scope="module")
def public_good() -> Any:
    with RepositoryServer(PUBLIC_GOOD) as server:
        yield server


def _public_good_host(tmp_path: Path, server: RepositoryServer) -> Client:
    home = tmp_path / "host"
    home.mkdir()
    return Client(home=home, url=server.url, root=PUBLIC_GOOD / "metadata" / "5.root.json", clock=SIGN_OFF)


@needs_faketime
def test_public_good_with_nothing_but_url_and_anchor(tmp_path: Path, public_good: RepositoryServer) -> None:
    host = _public_good_host(tmp_path, public_good)
    init = ok(host.run("init", "--tuf-url", host.url, "--root", str(host.root), "--json")).json()
    assert init["root_version"] == 5 and init["sync"]["sources"] == ["sigstore"]
    config = yaml.safe_load(host.config.read_text())["attestor"]["trust_repo"]
    assert config["trust_source"] == "sigstore"
    status = ok(host.status()).json()
    assert status["metadata"]["root"]["version"] == 13
    assert status["metadata"]["timestamp"]["version"] == 492
    assert status["sources"] == ["sigstore"] and status["service_map"] is None
    assert {t["role"] for t in status["targets"]} == {"trusted-root", "signing-config"}
    sigstore = status["sigstore"]
    logs = {log["base_url"]: log for log in sigstore["transparency_logs"]}
    assert logs["https://rekor.sigstore.dev"]["log_id"] == REKOR_LOG_ID
    assert logs["https://rekor.sigstore.dev"]["rekor_version"] == 1
    assert logs["https://log2025-1.rekor.sigstore.dev"]["rekor_version"] == 2
    assert logs["https://log2025-1.rekor.sigstore.dev"]["key_algorithm"] == "ed25519"
    assert all(log["status"] == "active" for log in logs.values())
    cas = sigstore["certificate_authorities"]
    assert sorted(ca["status"] for ca in cas) == ["active", "retired"]
    assert any("CN=sigstore-intermediate" in s for ca in cas for s in ca["subjects"])
    assert sorted(log["status"] for log in sigstore["ctlogs"]) == ["active", "retired"]
    assert sigstore["timestamp_authorities"][0]["uri"].startswith("https://timestamp.sigstore.dev")
    assert status["endpoints"]["rekor"]["url"] == "https://rekor.sigstore.dev"
    assert status["endpoints"]["rekor"]["log_id"] == REKOR_LOG_ID
    text = ok(host.run("status", "--show-keys", "--show-endpoints")).out
    assert "(rekor v2)" in text and "retired" in text and "https://ctfe.sigstore.dev/2022" in text


@needs_faketime
def test_public_good_pinned_by_a_later_roots_digest(tmp_path: Path, public_good: RepositoryServer) -> None:
    """Roots 1, 3 and 4 are not valid by today's rules: a digest pin of v5 passes over them."""
    host = _public_good_host(tmp_path, public_good)
    digest = hashlib.sha256(host.root.read_bytes()).hexdigest()
    init = ok(host.run("init", "--tuf-url", host.url, "--root-sha256", digest, "--json")).json()
    assert init["root_version"] == 5 and init["root_sha256"] == digest and init["anchor"] == "sha256"
    wrong = host.run("init", "--tuf-url", host.url, "--root-sha256", "ab" * 32, "--force")
    assert wrong.code == 1 and "expected " + "ab" * 32 in wrong.err


@needs_faketime
def test_public_good_delegated_role(tmp_path: Path, public_good: RepositoryServer) -> None:
    host = _public_good_host(tmp_path, public_good)
    pin = ["--pin", "registry.npmjs.org/keys.json"]
    ok(host.run("init", "--tuf-url", host.url, "--root", str(host.root), *pin))
    status = ok(host.status()).json()
    assert status["metadata"]["registry.npmjs.org"]["version"] == 6
    assert "registry.npmjs.org/keys.json" in {t["name"] for t in status["targets"]}


# ---- staging trust published in a repository we build ---------------------------------------
@pytest.fixture
def staging_repo(tmp_path: Path) -> Repository:
    repo = Repository.create(tmp_path / "staging-repository")
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        repo.add_target(name, (STAGING / name).read_bytes())
    repo.publish()
    return repo


@pytest.fixture
def staging_host(tmp_path: Path, staging_repo: Repository) -> Any:
    with FaultyServer(staging_repo.path) as server:
        home = tmp_path / "host"
        home.mkdir()
        host = Client(home=home, url=server.url, root=staging_repo.metadata_dir / "1.root.json")
        ok(host.run("init", "--tuf-url", host.url, "--root", str(host.root)))
        yield host


def _verify_args(case: dict[str, str], as_digest: bool) -> list[str]:
    artifact = STAGING / "bundles" / case["artifact"]
    subject = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest() if as_digest else str(artifact)
    return [
        "verify",
        "--bundle",
        str(STAGING / "bundles" / case["bundle"]),
        "--certificate-identity",
        case["identity"],
        "--certificate-oidc-issuer",
        case["issuer"],
        subject,
    ]


def _verify_every_case(host: Client) -> None:
    """Every staging case, by path and by digest, two processes at a time."""
    runs = [(case, as_digest) for case in CASES for as_digest in (False, True)]
    for start in range(0, len(runs), 2):
        batch = [
            (
                case,
                as_digest,
                host.popen(*_verify_args(case, as_digest), stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            )
            for case, as_digest in runs[start : start + 2]
        ]
        for case, as_digest, process in batch:
            out, err = process.communicate(timeout=60)
            expected = 0 if case["expect"] == "ok" else 1
            what = f"{case['note']} ({'digest' if as_digest else 'path'})"
            assert process.returncode == expected, f"{what}: exit {process.returncode}\n{out}{err}"
            if expected == 0:
                assert out.startswith("verified: sha256:"), what
            else:
                assert err.startswith("error: ") and err.count("\n") <= 2, what


@pytest.mark.slow
def test_staging_trust_exported_and_every_real_bundle_verified(tmp_path: Path, staging_host: Client) -> None:
    from sigstore.models import ClientTrustConfig, TrustedRoot

    status = ok(staging_host.status()).json()
    assert status["sources"] == ["sigstore"]
    exported = tmp_path / "trusted_root.json"
    ok(staging_host.run("export", "--format", "trusted-root", "--out", str(exported)))
    assert exported.read_bytes() == (STAGING / "trusted_root.json").read_bytes()
    assert TrustedRoot.from_file(str(exported)).get_fulcio_certs()
    config = tmp_path / "trust_config.json"
    summary = ok(
        staging_host.run("export", "--format", "client-trust-config", "--out", str(config), "--json")
    ).json()
    assert summary["format"] == "client-trust-config" and summary["bytes"] == config.stat().st_size
    assert ClientTrustConfig.from_json(config.read_text()).signing_config is not None
    _verify_every_case(staging_host)
    detail = ok(staging_host.run(*_verify_args(CASES[3], True), "--json")).json()
    assert detail["verified"] is True and detail["signer"] == CASES[3]["identity"]


@pytest.mark.slow
def test_verify_on_an_airgapped_host_after_a_bundle_import(tmp_path: Path, staging_host: Client) -> None:
    bundle = tmp_path / "trust.tar.zst"
    ok(staging_host.run("snapshot", "export", "--out", str(bundle)))
    home = tmp_path / "airgap"
    home.mkdir()
    env = clean_env(STELLA_TUF_OFFLINE_MODE="1")
    host = Client(home=home, url=(tmp_path / "nowhere").as_uri(), root=staging_host.root, env=env)
    ok(host.run("init", "--tuf-url", host.url, "--offline", "--root", str(host.root), "--no-sync"))
    ok(host.run("import", str(bundle), "--offline"))
    assert ok(host.status()).json()["sources"] == ["sigstore"]
    _verify_every_case(host)


def test_verify_never_opens_a_socket(staging_host: Client) -> None:
    """Run inside a network namespace with no interfaces: verification still succeeds."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], check=False).returncode:
        pytest.skip("needs unshare -n (root or user namespaces)")
    done = subprocess.run(
        ["unshare", "-n", *staging_host.argv(*_verify_args(CASES[0], False))],
        capture_output=True,
        text=True,
        env=staging_host.env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ---- refusals -----------------------------------------------------------------------------
@needs_faketime
def test_stale_trust_is_refused_to_verify_and_export(staging_host: Client) -> None:
    staging_host.clock = "+400d"
    refused(staging_host.run(*_verify_args(CASES[0], False)), 3, "Trust is stale")
    refused(staging_host.run("export", "--format", "trusted-root", "--out", "/dev/null"), 3, "stale")


def test_cache_edited_on_disk_is_refused(staging_host: Client) -> None:
    current = Store(staging_host.cache).current()
    assert current is not None
    path = current.target_path("trusted_root.json")
    path.write_bytes(path.read_bytes().replace(b"rekor", b"REKOR", 1))
    refused(staging_host.run(*_verify_args(CASES[0], False)), 3, "trusted_root.json")
    ok(staging_host.run("sync"))  # and the next sync repairs it
    ok(staging_host.run(*_verify_args(CASES[0], False)))


def test_bad_inputs_are_one_clear_line(tmp_path: Path, staging_host: Client) -> None:
    not_json = tmp_path / "root.txt"
    not_json.write_text("this is not a trusted root")
    args = _verify_args(CASES[0], False)
    refused(staging_host.run(*args[:-1], "--trusted-root", str(not_json), args[-1]), 1, "not JSON")
    huge = tmp_path / "huge.sigstore.json"
    huge.write_bytes(b" " * (17 << 20))
    oversized = [*args[:2], str(huge), *args[3:]]
    refused(staging_host.run(*oversized), 1, "limit")
    invalid = next(c for c in CASES if c["bundle"].startswith("bundle_invalid_version"))
    refused(staging_host.run(*_verify_args(invalid, False)), 1, "media type")
    refused(staging_host.run("verify", "--bundle", args[2], args[-1]), 2, "say who must have signed")


def test_service_map_repository_exports_a_trusted_root_sigstore_python_loads(
    tmp_path: Path, synced: Client
) -> None:
    from sigstore.models import TrustedRoot

    out = tmp_path / "trusted_root.json"
    ok(synced.run("export", "--format", "trusted-root", "--out", str(out)))
    root = TrustedRoot.from_file(str(out))
    assert len(root.get_fulcio_certs()) == 2
    document = json.loads(out.read_text())
    status = ok(synced.status()).json()
    assert status["sigstore"]["transparency_logs"][0]["log_id"] == status["endpoints"]["rekor"]["log_id"]
    assert document["tlogs"][0]["baseUrl"] == "https://rekor.sigstore.example"
