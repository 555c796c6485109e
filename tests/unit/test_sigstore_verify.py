"""Bundle verification against real staging bundles and trust (shared/fixtures/sigstore/staging)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.sigstore.bundleinput import MAX_BUNDLE_BYTES
from stella_trust._internal.sigstore.errors import BundleRefusedError, BundleVerificationError
from stella_trust._internal.sigstore.signers import IdentityPolicy, KeyPolicy
from stella_trust._internal.sigstore.verify import verify_bundle
from stella_trust.conformance.sigstore_client import main as client_main
from stella_trust.errors import EXIT_FAILED, UsageError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
STAGING = FIXTURES / "sigstore" / "staging"
BUNDLES = STAGING / "bundles"
CASES: list[dict[str, str]] = json.loads((STAGING / "cases.json").read_text())
V3 = "bundle_v3.txt"
V3_IDENTITY = "william@yossarian.net"
GITHUB = "https://github.com/login/oauth"


@pytest.fixture(scope="module")
def trusted_root() -> bytes:
    return (STAGING / "trusted_root.json").read_bytes()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _case_id(case: dict[str, str]) -> str:
    return case["note"]


@pytest.mark.parametrize("as_digest", [False, True], ids=["bytes", "digest"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_staging_case_has_expected_outcome(
    trusted_root: bytes, case: dict[str, str], as_digest: bool
) -> None:
    artifact = (BUNDLES / case["artifact"]).read_bytes()
    bundle = (BUNDLES / case["bundle"]).read_bytes()
    policy = IdentityPolicy(identity=case["identity"], issuer=case["issuer"])
    given: bytes | str = _digest(artifact) if as_digest else artifact
    if case["expect"] == "ok":
        outcome = verify_bundle(trusted_root, bundle, given, policy)
        assert outcome.signer == case["identity"]
        assert outcome.issuer == case["issuer"]
        assert outcome.artifact_digest == _digest(artifact)
        assert outcome.log_indexes and "identity" in outcome.checks
        assert outcome.integrated_time is not None or outcome.timestamps
    else:
        with pytest.raises((BundleVerificationError, BundleRefusedError)) as failure:
            verify_bundle(trusted_root, bundle, given, policy)
        assert failure.value.exit_code == EXIT_FAILED
        assert "\n" not in failure.value.message


def test_rekor_v2_bundle_reports_tsa_time_not_integrated_time(trusted_root: bytes) -> None:
    artifact = (BUNDLES / "staging-rekor-v2.txt").read_bytes()
    bundle = (BUNDLES / "staging-rekor-v2.txt.sigstore.json").read_bytes()
    outcome = verify_bundle(
        trusted_root, bundle, artifact, IdentityPolicy(identity="jku@goto.fi", issuer=GITHUB)
    )
    assert outcome.integrated_time is None
    assert len(outcome.timestamps) == 1 and outcome.timestamps[0].year == 2025


def test_a_memo_keeps_one_verifier_per_trusted_root_and_evicts_the_least_recently_used(
    trusted_root: bytes,
) -> None:
    """The verifier lives in the caller's memo, not in module state: same bytes, same verifier;
    at most four roots are held (the bound the module-level cache had), oldest out first."""
    artifact, bundle = (BUNDLES / V3).read_bytes(), (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    policy = IdentityPolicy(identity=V3_IDENTITY, issuer=GITHUB)
    memo = VerificationMemo()
    key = hashlib.sha256(trusted_root).digest()
    verify_bundle(trusted_root, bundle, artifact, policy, memo=memo)
    first = memo.verifiers.get(key)
    assert first is not None and len(memo.verifiers) == 1
    assert verify_bundle(trusted_root, bundle, artifact, policy, memo=memo).signer == V3_IDENTITY
    assert memo.verifiers.get(key) is first and len(memo.verifiers) == 1

    # four more roots (the same trust, other bytes): the first is evicted, and still verifies
    for spaces in range(1, 5):
        verify_bundle(trusted_root + b" " * spaces, bundle, artifact, policy, memo=memo)
    assert len(memo.verifiers) == 4 and key not in memo.verifiers
    assert verify_bundle(trusted_root, bundle, artifact, policy, memo=memo).signer == V3_IDENTITY
    assert memo.verifiers.get(key) is not first  # built again, then held again


def test_identity_regexp_matches_whole_value(trusted_root: bytes) -> None:
    artifact, bundle = (BUNDLES / V3).read_bytes(), (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    policy = IdentityPolicy(identity_regexp=r"william@.*\.net", issuer_regexp=r"https://github\.com/.*")
    outcome = verify_bundle(trusted_root, bundle, artifact, policy)
    assert outcome.signer == V3_IDENTITY
    assert outcome.issuer == GITHUB


def test_identity_regexp_is_not_a_substring_search(trusted_root: bytes) -> None:
    artifact, bundle = (BUNDLES / V3).read_bytes(), (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    policy = IdentityPolicy(identity_regexp="yossarian", issuer=GITHUB)
    with pytest.raises(BundleVerificationError) as failure:
        verify_bundle(trusted_root, bundle, artifact, policy)
    assert failure.value.check == "identity"


def test_wrong_identity_fails_naming_identity(trusted_root: bytes) -> None:
    artifact, bundle = (BUNDLES / V3).read_bytes(), (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    with pytest.raises(BundleVerificationError) as failure:
        verify_bundle(
            trusted_root, bundle, artifact, IdentityPolicy(identity="mallory@evil.example", issuer=GITHUB)
        )
    assert failure.value.check == "identity"
    assert "identity" in failure.value.message


@pytest.mark.parametrize("as_digest", [False, True], ids=["bytes", "digest"])
def test_tampered_artifact_fails_naming_digest_or_signature(trusted_root: bytes, as_digest: bool) -> None:
    artifact = (BUNDLES / V3).read_bytes() + b"tampered"
    bundle = (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    with pytest.raises(BundleVerificationError) as failure:
        verify_bundle(
            trusted_root,
            bundle,
            _digest(artifact) if as_digest else artifact,
            IdentityPolicy(identity=V3_IDENTITY, issuer=GITHUB),
        )
    assert failure.value.check in ("digest", "signature")
    assert failure.value.check in failure.value.message


def _refusal(trusted_root: bytes, bundle: bytes) -> BundleRefusedError:
    with pytest.raises(BundleRefusedError) as refused:
        verify_bundle(trusted_root, bundle, b"x", IdentityPolicy(identity=V3_IDENTITY, issuer=GITHUB))
    assert refused.value.exit_code == EXIT_FAILED
    return refused.value


def test_refuses_bundle_that_is_not_json(trusted_root: bytes) -> None:
    assert "not JSON" in _refusal(trusted_root, b"\x00not json{").message


def test_refuses_unknown_bundle_media_type(trusted_root: bytes) -> None:
    document: dict[str, Any] = json.loads((BUNDLES / f"{V3}.sigstore.json").read_bytes())
    document["mediaType"] = "application/vnd.dev.sigstore.bundle.v9+json"
    assert "unknown bundle media type" in _refusal(trusted_root, json.dumps(document).encode()).message


def test_refuses_oversize_bundle_before_reading_it(trusted_root: bytes) -> None:
    assert "limit" in _refusal(trusted_root, b" " * (MAX_BUNDLE_BYTES + 1)).message


def test_refuses_trusted_root_that_is_not_json() -> None:
    from stella_trust._internal.sigstore.errors import TrustMaterialError

    bundle = (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    with pytest.raises(TrustMaterialError) as refused:
        verify_bundle(b"<html>", bundle, b"x", IdentityPolicy(identity=V3_IDENTITY, issuer=GITHUB))
    assert "trusted_root.json: not JSON" in refused.value.message
    assert refused.value.exit_code == EXIT_FAILED


def test_malformed_digest_string_is_a_usage_error(trusted_root: bytes) -> None:
    bundle = (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    with pytest.raises(UsageError):
        verify_bundle(
            trusted_root, bundle, "sha256:1234", IdentityPolicy(identity=V3_IDENTITY, issuer=GITHUB)
        )


def test_policy_needs_identity_and_issuer() -> None:
    with pytest.raises(UsageError):
        IdentityPolicy(identity=V3_IDENTITY)
    with pytest.raises(UsageError):
        IdentityPolicy(identity=V3_IDENTITY, identity_regexp=".*", issuer=GITHUB)


def test_key_policy_refuses_certificate_bundle(trusted_root: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    artifact, bundle = (BUNDLES / V3).read_bytes(), (BUNDLES / f"{V3}.sigstore.json").read_bytes()
    with pytest.raises(BundleVerificationError) as failure:
        verify_bundle(trusted_root, bundle, artifact, KeyPolicy(public_key_pem=pem))
    assert "not a managed key" in failure.value.message


def test_client_exits_zero_on_success_and_one_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = str(STAGING / "trusted_root.json")
    args = ["verify-bundle", "--bundle", str(BUNDLES / f"{V3}.sigstore.json"), "--certificate-identity"]
    assert (
        client_main(
            [
                *args,
                V3_IDENTITY,
                "--certificate-oidc-issuer",
                GITHUB,
                "--trusted-root",
                root,
                str(BUNDLES / V3),
            ]
        )
        == 0
    )
    capsys.readouterr()
    digest = _digest((BUNDLES / V3).read_bytes())
    assert (
        client_main([*args, "x@y.z", "--certificate-oidc-issuer", GITHUB, "--trusted-root", root, digest])
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "identity" in err


def test_client_refuses_to_sign(capsys: pytest.CaptureFixture[str]) -> None:
    assert client_main(["sign-bundle", "--identity-token", "t", "--bundle", "b", "f"]) == 1
    assert "not supported" in capsys.readouterr().err
