"""`trust verify FILE...` (issue 24): a release of artifacts in one run, on real staging bundles.

Each artifact's bundle is read from `FILE.sigstore.json` (sigstore-python's convention); the
trust is read and re-verified once; one line per artifact; exit 1 if any failed, the others
still checked and reported; `--json` carries `result.artifacts[]`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stella_trust._internal.store import Store
from stella_trust.repository import Repository
from tests.conftest import FaultyServer, ok, refused
from tests.e2e.conftest import Client

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
BUNDLES = STAGING / "bundles"
WHO = [
    "--certificate-identity",
    "william@yossarian.net",
    "--certificate-oidc-issuer",
    "https://github.com/login/oauth",
]
PASSING = ("bundle_v3.txt", "bundle_v3_alt.txt")  # cases.json: ok for this identity
needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")


@pytest.fixture
def host(tmp_path: Path) -> Any:
    """A host whose cache holds staging's trust, synced from a repository we publish."""
    repo = Repository.create(tmp_path / "staging-repository")
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        repo.add_target(name, (STAGING / name).read_bytes())
    repo.publish()
    with FaultyServer(repo.path) as server:
        home = tmp_path / "host"
        home.mkdir()
        client = Client(home=home, url=server.url, root=repo.metadata_dir / "1.root.json")
        ok(client.run("init", "--tuf-url", client.url, "--root", str(client.root)))
        yield client


@pytest.fixture
def release(tmp_path: Path) -> dict[str, Path]:
    """A directory of artifacts with their bundles beside them: two that verify for WHO, a
    bundle whose log entry contradicts it (CVE-2022-36056), an artifact that is not the one its
    bundle signed, and one without a bundle."""
    out = tmp_path / "release"
    out.mkdir()
    files: dict[str, Path] = {}
    for name in (*PASSING, "bundle_cve_2022_36056.txt"):
        shutil.copy(BUNDLES / name, out / name)
        shutil.copy(BUNDLES / f"{name}.sigstore.json", out / f"{name}.sigstore.json")
        files[name] = out / name
    shutil.copy(BUNDLES / "bundle.txt", out / "swapped.txt")  # another artifact under bundle_v3's bundle
    shutil.copy(BUNDLES / "bundle_v3.txt.sigstore.json", out / "swapped.txt.sigstore.json")
    files["swapped.txt"] = out / "swapped.txt"
    shutil.copy(BUNDLES / "bundle.txt", out / "unsigned.txt")
    files["unsigned.txt"] = out / "unsigned.txt"
    return files


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_release_with_failures_reports_every_artifact_and_exits_1(
    host: Client, release: dict[str, Path]
) -> None:
    names = ["bundle_v3.txt", "bundle_cve_2022_36056.txt", "swapped.txt", "unsigned.txt", "bundle_v3_alt.txt"]
    result = host.run("verify", *WHO, *(str(release[n]) for n in names))
    assert result.code == 1, result.err
    lines = result.out.splitlines()
    per_artifact = [line for line in lines if not line.startswith("  ")]
    assert len(per_artifact) == len(names), result.out  # one line per artifact, in the order given
    for line, name in zip(per_artifact, names, strict=True):
        assert line.startswith(f"{release[name]}: "), line
    verdict = dict(zip(names, per_artifact, strict=True))
    for name in PASSING:  # checked after the failures before them, and passed
        assert f": verified: {_sha256(release[name])} signed by william@yossarian.net" in verdict[name]
    assert "FAILED: verification failed: log inclusion" in verdict["bundle_cve_2022_36056.txt"]
    assert "FAILED: verification failed: digest" in verdict["swapped.txt"]
    assert "FAILED: cannot read bundle" in verdict["unsigned.txt"]
    assert "unsigned.txt.sigstore.json" in verdict["unsigned.txt"]
    error, _hint = refused(result, 1, "3 of 5 artifacts did not verify", "swapped.txt", "unsigned.txt")
    assert "bundle_v3.txt," not in error
    # afterwards: the held trust is untouched and the passing artifacts verify on their own
    ok(host.status())
    ok(host.run("verify", *WHO, *(str(release[n]) for n in PASSING)))


def test_json_carries_each_artifacts_checks(host: Client, release: dict[str, Path]) -> None:
    names = ["bundle_v3.txt", "swapped.txt", "unsigned.txt"]
    result = host.run("verify", *WHO, "--json", *(str(release[n]) for n in names))
    assert result.code == 1
    document = json.loads(result.out)
    assert document["ok"] is False and document["error"]["exit_code"] == 1
    assert document["error"]["message"].startswith("2 of 3 artifacts did not verify")
    body = document["result"]
    assert body["verified"] is False and body["trust"].startswith("cache ")
    entries = {Path(entry["artifact"]).name: entry for entry in body["artifacts"]}
    assert list(entries) == names
    good = entries["bundle_v3.txt"]
    assert good["verified"] is True and good["bundle"] == f"{release['bundle_v3.txt']}.sigstore.json"
    assert good["checks"] == ["chain", "SCT", "identity", "log inclusion", "timestamp", "signature", "digest"]
    assert (
        good["artifact_digest"] == _sha256(release["bundle_v3.txt"])
        and good["signer"] == "william@yossarian.net"
    )
    assert good["sealed_log_checks"] and "error" not in good
    swapped = entries["swapped.txt"]
    assert swapped["verified"] is False and swapped["check"] == "digest"
    assert swapped["error"]["message"].startswith("verification failed: digest") and swapped["error"]["hint"]
    missing = entries["unsigned.txt"]
    assert missing["verified"] is False and missing["check"] is None
    assert "unsigned.txt.sigstore.json" in missing["error"]["message"]
    # all passing: ok, exit 0, every entry verified
    passing = ok(host.run("verify", *WHO, "--json", *(str(release[n]) for n in PASSING))).json()
    assert passing["verified"] is True and [e["verified"] for e in passing["artifacts"]] == [True, True]


def test_single_artifact_keeps_its_output_and_json_shape(host: Client, release: dict[str, Path]) -> None:
    artifact = release["bundle_v3.txt"]
    bundle = BUNDLES / "bundle_v3.txt.sigstore.json"
    text = ok(host.run("verify", *WHO, "--bundle", str(bundle), str(artifact))).out
    assert text.startswith(f"verified: {_sha256(artifact)} signed by william@yossarian.net")
    body = ok(host.run("verify", *WHO, "--bundle", str(bundle), str(artifact), "--json")).json()
    old_keys = {"verified", "trust", "checks", "artifact_digest", "bundle_media_type", "signer", "issuer"}
    assert old_keys <= set(body) and "sealed_log_checks" in body
    assert "artifact" not in body  # the old top level, unchanged
    (entry,) = body["artifacts"]
    assert entry["artifact"] == str(artifact) and entry["bundle"] == str(bundle)
    assert entry["checks"] == body["checks"] and entry["artifact_digest"] == body["artifact_digest"]
    # without --bundle, a single artifact's bundle is read from beside it
    beside = ok(host.run("verify", *WHO, str(artifact), "--json")).json()
    assert beside["artifacts"][0]["bundle"] == f"{artifact}.sigstore.json"
    # a single failure is still the command's one error line (its check, its hint)
    refused(host.run("verify", *WHO, str(release["swapped.txt"])), 1, "verification failed: digest")


def test_bundle_option_with_several_artifacts_is_refused(host: Client, release: dict[str, Path]) -> None:
    bundle = str(BUNDLES / "bundle_v3.txt.sigstore.json")
    _error, hint = refused(
        host.run("verify", *WHO, "--bundle", bundle, *(str(release[n]) for n in PASSING)),
        2,
        "--bundle names one artifact's bundle",
    )
    assert "ARTIFACT.sigstore.json" in hint
    digest = _sha256(release["bundle_v3.txt"])
    refused(host.run("verify", *WHO, digest, str(release["bundle_v3_alt.txt"])), 2, "a digest has no file")


def test_unusable_trust_ends_the_run_before_any_artifact(host: Client, release: dict[str, Path]) -> None:
    """Trust is judged once, for the whole run: an edited cache is one exit-3 line, and no
    artifact is reported verified on it; the next sync repairs it and the release verifies."""
    current = Store(host.cache).current()
    assert current is not None
    path = current.target_path("trusted_root.json")
    path.write_bytes(path.read_bytes().replace(b"rekor", b"REKOR", 1))
    result = host.run("verify", *WHO, *(str(release[n]) for n in PASSING))
    refused(result, 3, "trusted_root.json")
    assert result.out == ""
    ok(host.run("sync"))
    ok(host.run("verify", *WHO, *(str(release[n]) for n in PASSING)))


@needs_faketime
def test_stale_trust_refuses_the_whole_release(host: Client, release: dict[str, Path]) -> None:
    host.clock = "+400d"
    result = host.run("verify", *WHO, *(str(release[n]) for n in PASSING))
    refused(result, 3, "Trust is stale")
    assert result.out == ""
