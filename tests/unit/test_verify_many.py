"""`trust verify FILE...` pairing and per-artifact results, in process (verify_many.py):
bundles beside artifacts, `--bundle` only for one, a failure recorded and the next artifact
still checked, unusable trust ending the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.verify_many import Subject, failed_summary, subjects, verify_each
from stella_trust.errors import StaleTrustError, UsageError

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
POLICY = IdentityPolicy(identity="william@yossarian.net", issuer="https://github.com/login/oauth")


def test_bundles_are_read_beside_artifacts_and_bundle_names_one() -> None:
    assert subjects(["a.txt", "b.txt"], None) == [
        Subject("a.txt", Path("a.txt.sigstore.json")),
        Subject("b.txt", Path("b.txt.sigstore.json")),
    ]
    assert subjects(["a.txt"], Path("x.json")) == [Subject("a.txt", Path("x.json"))]
    with pytest.raises(UsageError, match="2 artifacts were given"):
        subjects(["a.txt", "b.txt"], Path("x.json"))
    with pytest.raises(UsageError, match="a digest has no file"):
        subjects(["sha256:" + "ab" * 32], None)


def test_each_artifact_is_checked_and_a_failure_does_not_stop_the_others(tmp_path: Path) -> None:
    for name in ("bundle_v3.txt", "bundle_cve_2022_36056.txt"):
        shutil.copy(STAGING / "bundles" / name, tmp_path / name)
        shutil.copy(STAGING / "bundles" / f"{name}.sigstore.json", tmp_path / f"{name}.sigstore.json")
    shutil.copy(STAGING / "bundles" / "bundle.txt", tmp_path / "lone.txt")
    names = ["bundle_cve_2022_36056.txt", "lone.txt", "bundle_v3.txt"]
    seen: list[bytes] = []

    def sealed(bundle: bytes) -> list[str]:
        seen.append(bundle)
        return ["sealed note"]

    root = (STAGING / "trusted_root.json").read_bytes()
    results = verify_each(subjects([str(tmp_path / n) for n in names], None), root, POLICY, sealed)
    assert [r.error is None for r in results] == [False, False, True]
    assert results[2].outcome is not None and results[2].log_checks == ("sealed note",)
    assert len(seen) == 1  # the sealed comparison runs only after sigstore-python accepted the bundle
    documents = [r.document() for r in results]
    assert documents[0]["check"] == "log inclusion" and documents[1]["check"] is None
    assert documents[2]["verified"] is True and documents[2]["signer"] == "william@yossarian.net"
    summary = failed_summary(results)
    assert summary is not None and summary.message.startswith("2 of 3 artifacts did not verify")
    assert failed_summary(results[2:]) is None


def test_trust_that_becomes_unusable_ends_the_run(tmp_path: Path) -> None:
    shutil.copy(STAGING / "bundles" / "bundle_v3.txt", tmp_path / "a.txt")
    shutil.copy(STAGING / "bundles" / "bundle_v3.txt.sigstore.json", tmp_path / "a.txt.sigstore.json")

    def stale(_bundle: bytes) -> list[str]:
        raise StaleTrustError("Trust is stale")

    root = (STAGING / "trusted_root.json").read_bytes()
    with pytest.raises(StaleTrustError):
        verify_each(subjects([str(tmp_path / "a.txt")] * 2, None), root, POLICY, stale)


def test_one_verifier_serves_every_artifact_of_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sigstore-python's verifier is built once per trusted-root content and run (decision 13),
    and every artifact still gets its own full verification (a bad one among good ones fails)."""
    from stella_trust._internal.sigstore import verify as verify_module

    built: list[bytes] = []
    real = verify_module._build_verifier

    def counting(trusted_root: bytes) -> object:
        built.append(trusted_root)
        return real(trusted_root)

    monkeypatch.setattr(verify_module, "_build_verifier", counting)
    names = []
    for index in range(5):
        name = "bundle_cve_2022_36056.txt" if index == 3 else "bundle_v3.txt"
        shutil.copy(STAGING / "bundles" / name, tmp_path / f"a{index}.txt")
        shutil.copy(STAGING / "bundles" / f"{name}.sigstore.json", tmp_path / f"a{index}.txt.sigstore.json")
        names.append(str(tmp_path / f"a{index}.txt"))
    root = (STAGING / "trusted_root.json").read_bytes()
    results = verify_each(subjects(names, None), root, POLICY, lambda _bundle: [])
    assert [r.error is None for r in results] == [True, True, True, False, True]
    assert built == [root]


def test_an_oversized_trusted_root_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """The bounds of decision 5 still apply to the trusted root now that they are checked where
    the verifier is built (a remembered verifier was built from identical bytes that met them)."""
    shutil.copy(STAGING / "bundles" / "bundle_v3.txt", tmp_path / "a.txt")
    shutil.copy(STAGING / "bundles" / "bundle_v3.txt.sigstore.json", tmp_path / "a.txt.sigstore.json")
    deep = b"[" * 200 + b"]" * 200
    results = verify_each(subjects([str(tmp_path / "a.txt")], None), deep, POLICY, lambda _bundle: [])
    assert results[0].error is not None
    assert results[0].error.message.startswith("trusted root nests arrays and objects more than 64 deep")
