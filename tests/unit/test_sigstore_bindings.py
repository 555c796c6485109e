"""Issue 21 on bundle verification: the entry bound to the log whose key verified it (never
to the bundle's claims), validity windows sigstore-python 4.5.1 does not check, and bounded
JSON. Real staging bundles and trust (shared/fixtures/sigstore/staging), edited one field at a
time; each refusal is one line, and the unedited bundle still verifies afterwards."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stella_trust._internal.sigstore.bundleinput import MAX_JSON_DEPTH
from stella_trust._internal.sigstore.errors import BundleRefusedError, BundleVerificationError
from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.sigstore.verify import verify_bundle
from stella_trust.conformance.sigstore_client import main as client_main
from stella_trust.errors import EXIT_FAILED
from tests.conftest import clean_env

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
BUNDLES = STAGING / "bundles"
CASES = {
    case["bundle"]: case
    for case in json.loads((STAGING / "cases.json").read_text())
    if case["expect"] == "ok"
}
V2 = "staging-rekor-v2.txt.sigstore.json"
V1_BUNDLES = ["bundle.txt.sigstore.json", "bundle_v3.txt.sigstore.json"]
TRUSTED_ROOT = json.loads((STAGING / "trusted_root.json").read_text())
V1_LOG_ID = base64.b64decode(
    next(t for t in TRUSTED_ROOT["tlogs"] if t["publicKey"]["keyDetails"] != "PKIX_ED25519")["logId"]["keyId"]
)
RANDOM = bytes(range(32))

Edit = Callable[[dict[str, Any]], None]


def verify(
    bundle_name: str, document: dict[str, Any] | None = None, root: dict[str, Any] | None = None
) -> Any:
    case = CASES[bundle_name]
    data = json.dumps(document).encode() if document is not None else (BUNDLES / bundle_name).read_bytes()
    return verify_bundle(
        json.dumps(root or TRUSTED_ROOT).encode(),
        data,
        (BUNDLES / case["artifact"]).read_bytes(),
        IdentityPolicy(identity=case["identity"], issuer=case["issuer"]),
    )


def edited(bundle_name: str, edit: Edit) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((BUNDLES / bundle_name).read_text())
    edit(document["verificationMaterial"]["tlogEntries"][0])
    return document


def refused_in_one_line(bundle_name: str, document: dict[str, Any], words: str, **kwargs: Any) -> str:
    with pytest.raises((BundleVerificationError, BundleRefusedError)) as refused:
        verify(bundle_name, document, **kwargs)
    message = refused.value.message
    assert refused.value.exit_code == EXIT_FAILED and "\n" not in message and refused.value.hint
    assert words in message, message
    assert verify(bundle_name).log_indexes  # the unedited bundle, same trust: still verifies
    return message


def _checkpoint_hint(entry: dict[str, Any], hint: bytes) -> None:
    checkpoint = entry["inclusionProof"]["checkpoint"]
    head, line = checkpoint["envelope"].rsplit("\u2014 ", 1)
    name, encoded = line.split(" ")
    raw = base64.b64decode(encoded)
    checkpoint["envelope"] = f"{head}\u2014 {name} {base64.b64encode(hint + raw[4:]).decode()}\n"


def _log_id(entry: dict[str, Any], value: bytes, *, rehint: bool = False) -> None:
    entry["logId"]["keyId"] = base64.b64encode(value).decode()
    if rehint:
        _checkpoint_hint(entry, value[:4])


def _b64_edit(entry: dict[str, Any], *path: str) -> None:
    holder: Any = entry
    for step in path[:-1]:
        holder = holder[step]
    raw = bytearray(base64.b64decode(holder[path[-1]]))
    raw[len(raw) // 2] ^= 1
    holder[path[-1]] = base64.b64encode(bytes(raw)).decode()


def _first_proof_hash(entry: dict[str, Any]) -> None:
    hashes = entry["inclusionProof"]["hashes"]
    raw = bytearray(base64.b64decode(hashes[0]))
    raw[0] ^= 1
    hashes[0] = base64.b64encode(bytes(raw)).decode()


def _own_log_id(entry: dict[str, Any]) -> bytes:
    return base64.b64decode(entry["logId"]["keyId"])


# Every field of staging's real Rekor v2 entry, edited: (edit, words of the one-line refusal).
# Fields no signature covers are refused by our binding (issue 21); the others by sigstore-python.
V2_EDITS: dict[str, tuple[Edit, str]] = {
    "logId-random-keeping-the-key-hint": (
        lambda e: _log_id(e, _own_log_id(e)[:4] + RANDOM[4:]),
        "which the trust does not hold, but it is signed by the key of log f30d5a999d92e662",
    ),
    "logId-random-with-a-matching-key-hint": (
        lambda e: _log_id(e, RANDOM, rehint=True),
        "the entry names log 000102030405060",
    ),
    # sigstore-python finds that log's key by this ID and tries it alone: its own refusal
    "logId-of-the-other-log-with-its-key-hint": (lambda e: _log_id(e, V1_LOG_ID, rehint=True), "keyring"),
    "logId-of-the-other-log": (lambda e: _log_id(e, V1_LOG_ID), "log inclusion"),
    "logIndex-7": (
        lambda e: e.update(logIndex="7"),
        "the entry's logIndex 7 is not its inclusion proof's index 645",
    ),
    "logIndex-646": (lambda e: e.update(logIndex="646"), "logIndex 646 is not"),
    "proof-logIndex": (lambda e: e["inclusionProof"].update(logIndex="7"), "inclusion proof"),
    "proof-treeSize": (lambda e: e["inclusionProof"].update(treeSize="700"), "inclusion proof"),
    "proof-rootHash": (lambda e: _b64_edit(e, "inclusionProof", "rootHash"), "log inclusion"),
    "proof-hash": (lambda e: _first_proof_hash(e), "log inclusion"),
    "checkpoint-key-hint": (lambda e: _checkpoint_hint(e, b"\0\0\0\0"), "checkpoint"),
    "checkpoint-size": (
        lambda e: e["inclusionProof"]["checkpoint"].update(
            envelope=e["inclusionProof"]["checkpoint"]["envelope"].replace("\n646\n", "\n647\n")
        ),
        "checkpoint",
    ),
    "canonicalizedBody": (lambda e: _b64_edit(e, "canonicalizedBody"), "log"),
    "kindVersion": (lambda e: e["kindVersion"].update(version="0.0.1"), ""),
    "inclusionPromise-added": (
        lambda e: e.update(integratedTime="1749470258", inclusionPromise={"signedEntryTimestamp": "AAAA"}),
        "",
    ),
}


@pytest.mark.parametrize("field", V2_EDITS, ids=list(V2_EDITS))
def test_the_real_rekor_v2_bundle_edited_in_any_field_is_refused(field: str) -> None:
    edit, words = V2_EDITS[field]
    refused_in_one_line(V2, edited(V2, edit), words)


def test_an_unsigned_integrated_time_is_not_reported() -> None:
    """A Rekor v2 entry has no SET: an `integratedTime` added to it is nobody's signed time."""
    document = edited(V2, lambda e: e.update(integratedTime="1000000000"))
    outcome = verify(V2, document)
    assert outcome.integrated_time is None and outcome.timestamps
    assert outcome.log_indexes == (645,) and outcome.log_ids == (
        _own_log_id(edited(V2, lambda e: None)["verificationMaterial"]["tlogEntries"][0]).hex(),
    )


@pytest.mark.parametrize("bundle_name", V1_BUNDLES)
def test_a_rekor_v1_bundle_reports_its_proved_tree_index_and_its_log(bundle_name: str) -> None:
    """Rekor v1's SET signs a global logIndex across shards; the proved index is the tree's."""
    document = json.loads((BUNDLES / bundle_name).read_text())
    entry = document["verificationMaterial"]["tlogEntries"][0]
    outcome = verify(bundle_name)
    assert outcome.log_indexes == (int(entry["inclusionProof"]["logIndex"]),)
    assert outcome.log_ids == (V1_LOG_ID.hex(),) and outcome.integrated_time is not None
    refused_in_one_line(
        bundle_name, edited(bundle_name, lambda e: _log_id(e, RANDOM, rehint=True)), "log inclusion"
    )


# -- validity windows ---------------------------------------------------------------------------


def root_with(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    root = copy.deepcopy(TRUSTED_ROOT)
    edit(root)
    return root


def _tlog(root: dict[str, Any], ed25519: bool) -> dict[str, Any]:
    return next(t for t in root["tlogs"] if (t["publicKey"]["keyDetails"] == "PKIX_ED25519") == ed25519)


def sigstore_alone_accepts(bundle_name: str, root: dict[str, Any]) -> None:
    """sigstore-python 4.5.1's own Verifier (public API) accepts: the window check is ours."""
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity
    from sigstore_models.trustroot.v1 import TrustedRoot as Model

    case = CASES[bundle_name]
    verifier = Verifier(trusted_root=TrustedRoot(Model.from_json(json.dumps(root))))
    verifier.verify_artifact(
        (BUNDLES / case["artifact"]).read_bytes(),
        Bundle.from_json((BUNDLES / bundle_name).read_bytes()),
        Identity(identity=case["identity"], issuer=case["issuer"]),
    )


def test_an_entry_timestamped_after_its_rekor_v2_key_ended_is_refused() -> None:
    def end(moment: str) -> dict[str, Any]:
        return root_with(lambda r: _tlog(r, True)["publicKey"]["validFor"].update(end=moment))

    early = end("2025-06-01T00:00:00Z")  # the RFC 3161 time is 2025-06-09T11:57:38Z
    sigstore_alone_accepts(V2, early)
    refused_in_one_line(
        V2, json.loads((BUNDLES / V2).read_text()), "timestamped at 2025-06-09T11:57:38Z", root=early
    )
    assert verify(V2, root=end("2025-06-09T11:57:38Z")).log_indexes == (645,)  # closed interval
    late_start = root_with(
        lambda r: _tlog(r, True)["publicKey"]["validFor"].update(start="2025-06-10T00:00:00Z")
    )
    refused_in_one_line(V2, json.loads((BUNDLES / V2).read_text()), "outside the validity", root=late_start)


@pytest.mark.parametrize("bundle_name", V1_BUNDLES)
def test_an_entry_integrated_after_its_rekor_v1_key_ended_is_refused(bundle_name: str) -> None:
    early = root_with(lambda r: _tlog(r, False)["publicKey"]["validFor"].update(end="2022-01-01T00:00:00Z"))
    sigstore_alone_accepts(bundle_name, early)
    message = refused_in_one_line(
        bundle_name, json.loads((BUNDLES / bundle_name).read_text()), "integrated at", root=early
    )
    assert "2022-01-01T00:00:00Z" in message


@pytest.mark.parametrize("bundle_name", [V2, *V1_BUNDLES])
def test_a_signature_after_its_certificate_authority_ended_is_refused(bundle_name: str) -> None:
    early = root_with(lambda r: r["certificateAuthorities"][0]["validFor"].update(end="2023-01-01T00:00:00Z"))
    sigstore_alone_accepts(bundle_name, early)
    message = refused_in_one_line(
        bundle_name, json.loads((BUNDLES / bundle_name).read_text()), "certificate authority", root=early
    )
    assert message.startswith("verification failed: chain: signing time ")


def test_a_second_authority_with_the_same_certificates_but_a_valid_window_is_enough() -> None:
    """The check is "some CA that issued the leaf was valid then", as sigstore-go selects CAs."""

    def add_expired_twin(root: dict[str, Any]) -> None:
        twin = copy.deepcopy(root["certificateAuthorities"][0])
        twin["validFor"]["end"] = "2023-01-01T00:00:00Z"
        root["certificateAuthorities"].insert(0, twin)

    assert verify(V2, root=root_with(add_expired_twin)).log_indexes == (645,)


def test_a_timestamp_outside_its_authority_is_refused_by_sigstore_python_already() -> None:
    early = root_with(lambda r: r["timestampAuthorities"][0]["validFor"].update(end="2025-06-01T00:00:00Z"))
    refused_in_one_line(V2, json.loads((BUNDLES / V2).read_text()), "timestamp", root=early)


@pytest.mark.parametrize("bundle_name", [V2, *V1_BUNDLES])
def test_the_ca_window_reads_the_issuer_and_times_sigstore_python_just_established(
    bundle_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: the CA window is judged with the certificate cryptography's chain builder used as
    the leaf's issuer and the times sigstore-python established, recorded during its own
    verification of this bundle: the leaf's signature is not verified again against each CA, nor
    are the times established twice. A window that does not hold (the CA ended earlier, above)
    still gets the whole check and its refusal."""
    from stella_trust._internal.memo import VerificationMemo
    from stella_trust._internal.sigstore import signedfacts
    from stella_trust._internal.sigstore.intoto_entry import IntotoVerifier

    counts = {"issued_leaf": 0, "established": 0}
    issued_leaf, established = signedfacts._issued_leaf, IntotoVerifier._established

    def counted_issued_leaf(authority: Any, leaf: Any) -> bool:
        counts["issued_leaf"] += 1
        return issued_leaf(authority, leaf)

    def counted_established(self: Any, bundle: Any) -> list[Any]:
        counts["established"] += 1
        return established(self, bundle)

    monkeypatch.setattr(signedfacts, "_issued_leaf", counted_issued_leaf)
    monkeypatch.setattr(IntotoVerifier, "_established", counted_established)
    case, memo = CASES[bundle_name], VerificationMemo()
    for _ in range(3):
        outcome = verify_bundle(
            json.dumps(TRUSTED_ROOT).encode(),
            (BUNDLES / bundle_name).read_bytes(),
            (BUNDLES / case["artifact"]).read_bytes(),
            IdentityPolicy(identity=case["identity"], issuer=case["issuer"]),
            memo=memo,
        )
        assert "chain" in outcome.checks
    assert counts == {"issued_leaf": 0, "established": 3}  # once per verification, sigstore's own
    early = root_with(lambda r: r["certificateAuthorities"][0]["validFor"].update(end="2023-01-01T00:00:00Z"))
    refused_in_one_line(
        bundle_name, json.loads((BUNDLES / bundle_name).read_text()), "certificate authority", root=early
    )
    assert counts["issued_leaf"] > 0  # the whole check gave the refusal


def test_a_known_issuer_no_authority_holds_gets_the_whole_check() -> None:
    """The shortcut only ever accepts what the whole check accepts: issuers held by no CA of the
    trust (or not certificates at all) leave the answer to `verify_directly_issued_by`."""
    from cryptography.x509 import load_der_x509_certificate
    from sigstore.models import Bundle
    from sigstore_models.trustroot.v1 import TrustedRoot as Model

    from stella_trust._internal.sigstore.signedfacts import check_ca_window

    authorities = Model.from_json(json.dumps(TRUSTED_ROOT)).certificate_authorities
    leaf = Bundle.from_json((BUNDLES / V2).read_bytes()).signing_certificate
    issuer = load_der_x509_certificate(authorities[0].cert_chain.certificates[0].raw_bytes)
    at = leaf.not_valid_before_utc
    check_ca_window(leaf, authorities, [at], [leaf, "not a certificate"])  # the whole check: valid
    early = Model.from_json(
        json.dumps(
            root_with(lambda r: r["certificateAuthorities"][0]["validFor"].update(end="2023-01-01T00:00:00Z"))
        )
    ).certificate_authorities
    for known in ([issuer], [leaf], ["not a certificate"], []):
        with pytest.raises(
            BundleVerificationError, match="outside the validity of the certificate authority"
        ):
            check_ca_window(leaf, early, [at], known)


def test_each_thread_judges_its_own_verification_with_one_shared_verifier() -> None:
    """One verifier serves every thread verifying with the same trust (the memo's): what
    sigstore-python established is kept per thread, so threads verifying different bundles at
    once each judge their own (real bundles of two logs, 2 threads x 10 verifications)."""
    import threading

    from stella_trust._internal.memo import VerificationMemo

    memo, failures = VerificationMemo(), []
    root = json.dumps(TRUSTED_ROOT).encode()

    def run(bundle_name: str, expected: tuple[int, ...]) -> None:
        case = CASES[bundle_name]
        policy = IdentityPolicy(identity=case["identity"], issuer=case["issuer"])
        for _ in range(10):
            try:
                data, artifact = (
                    (BUNDLES / bundle_name).read_bytes(),
                    (BUNDLES / case["artifact"]).read_bytes(),
                )
                outcome = verify_bundle(root, data, artifact, policy, memo=memo)
                assert outcome.log_indexes == expected, outcome.log_indexes
            except Exception as exc:
                failures.append(f"{bundle_name}: {exc!r}")

    v1 = V1_BUNDLES[1]
    expected = {name: verify(name).log_indexes for name in (V2, v1)}
    threads = [threading.Thread(target=run, args=(name, expected[name])) for name in (V2, v1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and not any(thread.is_alive() for thread in threads)
    verifier = next(iter(memo.verifiers._items.values()))
    assert verifier.recorded() == (None, [])  # this thread verified nothing with it


# -- bounds -------------------------------------------------------------------------------------


DEEP = b"[" * 200_000 + b"]" * 200_000


def test_a_bundle_nested_200000_deep_is_one_line() -> None:
    with pytest.raises(BundleRefusedError) as refused:
        verify_bundle(
            (STAGING / "trusted_root.json").read_bytes(), DEEP, b"x", IdentityPolicy(identity="a", issuer="b")
        )
    assert f"more than {MAX_JSON_DEPTH} deep" in refused.value.message and refused.value.hint
    with pytest.raises(BundleRefusedError, match="trusted root nests"):
        verify_bundle(DEEP, (BUNDLES / V2).read_bytes(), b"x", IdentityPolicy(identity="a", issuer="b"))


def test_brackets_inside_strings_are_not_nesting() -> None:
    document = json.loads((BUNDLES / V2).read_text())
    document["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"] = '[{"\\"' * 100
    with pytest.raises(BundleVerificationError):  # parsed and verified, not refused as too deep
        verify(V2, document)
    nested: Any = "x"
    for _ in range(MAX_JSON_DEPTH - 4):
        nested = [nested]
    document = json.loads((BUNDLES / V2).read_text())
    document["extra"] = nested
    with pytest.raises(BundleRefusedError, match="malformed bundle"):  # under the bound: parsed
        verify(V2, document)


def test_the_conformance_client_and_trust_verify_say_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.sigstore.json"
    deep.write_bytes(DEEP)
    root = str(STAGING / "trusted_root.json")
    args = [
        "--certificate-identity",
        "a",
        "--certificate-oidc-issuer",
        "b",
        "--trusted-root",
        root,
        str(deep),
    ]
    assert client_main(["verify-bundle", "--bundle", str(deep), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nests arrays and objects" in err
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stella_trust",
            "--config",
            str(tmp_path / "trust.yaml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "verify",
            "--bundle",
            str(deep),
            *args,
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: bundle nests") and lines[1].startswith("hint: ")
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
