"""trusted_root.json facts, signing configs, synthesis and client trust config, on real public data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stella_trust._internal.sigstore.errors import TrustMaterialError
from stella_trust._internal.sigstore.exports import client_trust_config, synthesize_trusted_root
from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.sigstore.trusted_root import (
    CLIENT_TRUST_CONFIG_MEDIA_TYPE,
    SIGNING_CONFIG_V01_MEDIA_TYPE,
    parse_signing_config,
    parse_trusted_root,
)
from stella_trust._internal.sigstore.verify import verify_bundle

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
PUBLIC_GOOD = FIXTURES / "sigstore" / "public-good-2025-10" / "targets"
STAGING = FIXTURES / "sigstore" / "staging"
NOW = datetime(2025, 10, 20, 12, tzinfo=UTC)
REKOR_LOG_ID = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"


def _target(name: str) -> bytes:
    (path,) = PUBLIC_GOOD.glob(f"*.{name}")
    return path.read_bytes()


@pytest.fixture(scope="module")
def public_good() -> tuple[bytes, bytes]:
    return _target("trusted_root.json"), _target("signing_config.v0.2.json")


def test_public_good_rekor_logs_v1_and_v2(public_good: tuple[bytes, bytes]) -> None:
    trust = parse_trusted_root(*public_good)
    by_url = {log.base_url: log for log in trust.transparency_logs}
    v1 = by_url["https://rekor.sigstore.dev"]
    assert v1.log_id == REKOR_LOG_ID == v1.spki_sha256
    assert (v1.kind, v1.key_algorithm, v1.rekor_version, v1.rekor_version_source) == (
        "rekor",
        "ecdsa-p256-sha256",
        1,
        "signing-config",
    )
    assert v1.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    v2 = by_url["https://log2025-1.rekor.sigstore.dev"]
    assert (v2.key_algorithm, v2.rekor_version) == ("ed25519", 2)
    assert v2.valid_from == datetime(2025, 9, 23, tzinfo=UTC)
    assert trust.rekor_log(REKOR_LOG_ID.upper()) is v1


def test_public_good_fulcio_cas_ct_logs_and_status_at_now(public_good: tuple[bytes, bytes]) -> None:
    trust = parse_trusted_root(*public_good)
    assert [ca.status(NOW) for ca in trust.certificate_authorities] == ["retired", "active"]
    current = trust.certificate_authorities[1]
    assert current.uri == "https://fulcio.sigstore.dev"
    assert current.subjects == ("CN=sigstore-intermediate,O=sigstore.dev", "CN=sigstore,O=sigstore.dev")
    assert len(current.fingerprints) == 2 and all(len(fp) == 64 for fp in current.fingerprints)
    assert all(pem.startswith("-----BEGIN CERTIFICATE-----") for pem in current.chain_pems)
    assert {log.base_url: log.status(NOW) for log in trust.ctlogs} == {
        "https://ctfe.sigstore.dev/test": "retired",
        "https://ctfe.sigstore.dev/2022": "active",
    }
    assert [tsa.status(NOW) for tsa in trust.timestamp_authorities] == ["active"]
    assert trust.transparency_logs[1].status(datetime(2025, 1, 1, tzinfo=UTC)) == "not-yet-valid"


def test_to_json_shows_retired_entries_with_status_and_z_times(public_good: tuple[bytes, bytes]) -> None:
    document = parse_trusted_root(*public_good).to_json(NOW)
    json.dumps(document)  # JSON-ready
    assert [ca["status"] for ca in document["certificate_authorities"]] == ["retired", "active"]
    assert document["certificate_authorities"][0]["valid_until"] == "2022-12-31T23:59:59.999Z"
    assert document["transparency_logs"][0]["valid_from"] == "2021-01-12T11:53:27Z"
    assert {s["kind"] for s in document["services"]} == {"ca", "oidc", "tlog", "tsa"}
    assert document["now"] == "2025-10-20T12:00:00Z"


def test_signing_config_v02_and_legacy_v01() -> None:
    v02 = parse_signing_config(_target("signing_config.v0.2.json"))
    assert {(s.kind, s.url, s.major_api_version) for s in v02.services} >= {
        ("ca", "https://fulcio.sigstore.dev", 1),
        ("tlog", "https://rekor.sigstore.dev", 1),
    }
    (legacy_path,) = [p for p in PUBLIC_GOOD.glob("*.signing_config.json")]
    v01 = parse_signing_config(legacy_path.read_bytes())
    assert v01.media_type == SIGNING_CONFIG_V01_MEDIA_TYPE
    assert {(s.kind, s.url) for s in v01.services} == {
        ("ca", "https://fulcio.sigstore.dev"),
        ("oidc", "https://oauth2.sigstore.dev/auth"),
        ("tlog", "https://rekor.sigstore.dev"),
    }


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "not JSON"),
        (b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}', "tlogs"),
    ],
)
def test_malformed_trusted_root_is_one_line_naming_target(data: bytes, problem: str) -> None:
    with pytest.raises(TrustMaterialError) as refused:
        parse_trusted_root(data, target="trusted_root.json")
    assert refused.value.message.startswith("trusted_root.json: ")
    assert problem in refused.value.message and "\n" not in refused.value.message


def test_unknown_signing_config_media_type_is_refused() -> None:
    with pytest.raises(TrustMaterialError, match="unknown signing config media type"):
        parse_signing_config(b'{"mediaType": "application/vnd.example+json"}')


def _loads_in_sigstore(config: bytes) -> None:
    from sigstore.models import ClientTrustConfig

    loaded = ClientTrustConfig.from_json(config.decode())
    assert loaded.trusted_root.rekor_keyring is not None
    loaded.signing_config  # noqa: B018 - constructing it validates the services


def test_client_trust_config_embeds_signing_config_and_loads_in_sigstore(
    public_good: tuple[bytes, bytes],
) -> None:
    config = client_trust_config(*public_good)
    document = json.loads(config)
    assert document["mediaType"] == CLIENT_TRUST_CONFIG_MEDIA_TYPE
    assert document["signingConfig"] == json.loads(public_good[1])
    _loads_in_sigstore(config)


def test_client_trust_config_without_signing_config_is_derived_and_loads(
    public_good: tuple[bytes, bytes],
) -> None:
    config = client_trust_config(public_good[0], None)
    derived = json.loads(config)["signingConfig"]
    assert {(t["url"], t["majorApiVersion"]) for t in derived["rekorTlogUrls"]} == {
        ("https://rekor.sigstore.dev", 1),
        ("https://log2025-1.rekor.sigstore.dev", 2),
    }
    assert derived["oidcUrls"] == []
    _loads_in_sigstore(config)


def test_client_trust_config_converts_legacy_signing_config(public_good: tuple[bytes, bytes]) -> None:
    config = client_trust_config(public_good[0], _target("signing_config.json"))
    assert json.loads(config)["signingConfig"]["oidcUrls"][0]["url"] == "https://oauth2.sigstore.dev/auth"
    _loads_in_sigstore(config)


def _staging_parts() -> tuple[str, str, list[str], list[tuple[str, str]]]:
    staging = parse_trusted_root((STAGING / "trusted_root.json").read_bytes())
    rekor = staging.transparency_logs[0]
    fulcio = staging.certificate_authorities[-1]
    ctlogs = [(log.base_url, log.public_key_pem) for log in staging.ctlogs]
    return rekor.base_url, rekor.public_key_pem, list(fulcio.chain_pems), ctlogs


def test_synthesized_trusted_root_loads_and_has_spki_log_id(tmp_path: Path) -> None:
    from sigstore.models import TrustedRoot

    rekor_url, rekor_pem, chain, ctlogs = _staging_parts()
    data = synthesize_trusted_root(
        rekor_url, rekor_pem, "https://fulcio.sigstage.dev", chain, ctlog_keys=ctlogs
    )
    (tmp_path / "trusted_root.json").write_bytes(data)
    loaded = TrustedRoot.from_file(str(tmp_path / "trusted_root.json"))
    assert len(loaded.get_fulcio_certs()) == len(chain)
    trust = parse_trusted_root(data)
    assert trust.media_type == "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
    assert trust.transparency_logs[0].log_id == trust.transparency_logs[0].spki_sha256
    assert (
        trust.transparency_logs[0].log_id
        == parse_trusted_root((STAGING / "trusted_root.json").read_bytes()).transparency_logs[0].log_id
    )
    assert trust.certificate_authorities[0].subjects[-1] == "CN=sigstore,O=sigstore.dev"
    assert trust.certificate_authorities[0].valid_from == min(  # default: earliest notBefore
        x509_not_before(pem) for pem in chain
    )


def x509_not_before(pem: str) -> datetime:
    from cryptography.x509 import load_pem_x509_certificate

    return load_pem_x509_certificate(pem.encode()).not_valid_before_utc


def test_synthesized_trusted_root_verifies_a_staging_bundle(tmp_path: Path) -> None:
    """Root-first chain input is reordered; the result verifies a real staging bundle."""
    from sigstore.models import TrustedRoot

    rekor_url, rekor_pem, chain, ctlogs = _staging_parts()
    data = synthesize_trusted_root(
        rekor_url,
        rekor_pem,
        "https://fulcio.sigstage.dev",
        list(reversed(chain)),
        ctlog_keys=ctlogs,
        valid_from=datetime(2021, 1, 1, tzinfo=UTC),
    )
    (tmp_path / "trusted_root.json").write_bytes(data)
    TrustedRoot.from_file(str(tmp_path / "trusted_root.json"))  # sigstore-python's own loader
    bundles = STAGING / "bundles"
    outcome = verify_bundle(
        data,
        (bundles / "bundle_v3.txt.sigstore.json").read_bytes(),
        (bundles / "bundle_v3.txt").read_bytes(),
        IdentityPolicy(identity="william@yossarian.net", issuer="https://github.com/login/oauth"),
    )
    assert outcome.signer == "william@yossarian.net"
