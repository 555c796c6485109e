"""`trust verify FILE...` (issue 24): a release of artifacts in one run, on real staging bundles.

Each artifact's bundle is read from `FILE.sigstore.json` (sigstore-python's convention); the
trust is read and re-verified once; one line per artifact; exit 1 if any failed, the others
still checked and reported; `--json` carries `result.artifacts[]`.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def _run(host: Client, *args: str, one_cpu: bool = False, ignore_sigchld: bool = False) -> Any:
    """`trust ARGS` with --debug (it names where sigstore-python's checks ran), pinned to one CPU
    or with SIGCHLD ignored (a disposition exec keeps) when asked."""
    import signal
    import subprocess

    def before_exec() -> None:
        if one_cpu:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        if ignore_sigchld:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    return subprocess.run(
        host.argv(*args),
        capture_output=True,
        text=True,
        env={**host.env, "STELLA_DEBUG": "1"},
        timeout=60,
        check=False,
        preexec_fn=before_exec,
    )


def _worker_pid(stderr: str) -> int | None:
    """The worker's pid from --debug's line; None when the checks ran in the CLI's own process."""
    (line,) = [line for line in stderr.splitlines() if "sigstore-python's checks run in" in line]
    return int(line.rsplit(" ", 1)[1]) if "worker process" in line else None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the worker needs two CPUs (CI has two)")
def test_with_a_worker_or_on_one_cpu_a_release_gets_the_same_answers(
    host: Client, release: dict[str, Path]
) -> None:
    """Two CPUs: sigstore-python's checks run in the worker process (verify_worker.py); one CPU:
    in the CLI's own. The answers (every line, the JSON, the exit code) are the same, the worker
    is gone when the command returns, and the run after each is the same again."""
    names = ["bundle_v3.txt", "bundle_cve_2022_36056.txt", "swapped.txt", "unsigned.txt", "bundle_v3_alt.txt"]
    paths = [str(release[n]) for n in names]
    for form in ([], ["--json"]):
        two = _run(host, "verify", *WHO, *form, *paths)
        one = _run(host, "verify", *WHO, *form, *paths, one_cpu=True)
        pid = _worker_pid(two.stderr)
        assert pid is not None and _worker_pid(one.stderr) is None, (two.stderr, one.stderr)
        assert not Path(f"/proc/{pid}").exists()  # ended and reaped with the command
        assert (two.returncode, two.stdout) == (one.returncode, one.stdout) and two.returncode == 1
        assert two.stdout.count("verified") >= 2
    # a single artifact, through the worker: its refusal is the command's one error, as in process
    single = [str(release["swapped.txt"])]
    two, one = _run(host, "verify", *WHO, *single), _run(host, "verify", *WHO, *single, one_cpu=True)
    assert _worker_pid(two.stderr) is not None
    assert (two.returncode, two.stdout) == (one.returncode, one.stdout) == (1, "")
    assert [line for line in two.stderr.splitlines() if not line.startswith("debug:")] == [
        line for line in one.stderr.splitlines() if not line.startswith("debug:")
    ]
    ok(host.run("verify", *WHO, *(str(release[n]) for n in PASSING)))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the worker needs two CPUs (CI has two)")
def test_a_caller_that_ignores_sigchld_still_gets_its_answer(host: Client, release: dict[str, Path]) -> None:
    """With SIGCHLD ignored the kernel reaps the worker itself; ending it must not fail the run."""
    for _ in range(3):
        done = _run(host, "verify", *WHO, *(str(release[n]) for n in PASSING), ignore_sigchld=True)
        assert done.returncode == 0, done.stderr
        assert _worker_pid(done.stderr) is not None and done.stdout.count(": verified: ") == 2
