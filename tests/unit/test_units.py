"""Pure logic: names, service maps, the fetcher's file:// path, the store, offline verification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_exceptions

from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust._internal.policy.facts import public_key_facts
from stella_trust._internal.policy.names import match_name
from stella_trust._internal.policy.servicemap import (
    parse_service_map,
    referenced_targets,
    resolve_endpoints,
    resolve_services,
)
from stella_trust._internal.store import Store
from stella_trust._internal.tuf.offline import verify_root_chain
from stella_trust.demo.repository import DemoRepository, service_map, spki_sha256
from stella_trust.errors import CacheVerificationError, ServiceMapError, UnknownTargetError
from tests.conftest import FaultyServer

NAMES = ["rekor-key-v1.pub", "rekor-key-v2.pub", "fulcio-chain.pem", "sigstore-services-v1.json"]


def test_match_name_exact_stem_ambiguous_unknown() -> None:
    assert match_name("fulcio-chain.pem", NAMES) == "fulcio-chain.pem"
    assert match_name("rekor-key-v1", NAMES) == "rekor-key-v1.pub"
    assert match_name("sigstore-services-v1", NAMES) == "sigstore-services-v1.json"
    with pytest.raises(UnknownTargetError, match=r"ambiguous, matches 'a.x' and 'a.y'"):
        match_name("a", ["a.x", "a.y"])
    with pytest.raises(UnknownTargetError, match=r"close names: .*rekor-key-v1.pub"):
        match_name("rekor-key-v9", NAMES)
    with pytest.raises(UnknownTargetError, match=r"^Unknown target 'zzz' in the repository$"):
        match_name("zzz", NAMES)
    with pytest.raises(UnknownTargetError):  # a stem match needs the dot: no prefix guessing
        match_name("rekor", ["rekor-key.pub"])


def _map(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "version": 1,
        "rekor": {"url": "https://r", "public_key_target": "k"},
        "fulcio": {"url": "https://f", "root_cert_target": "c"},
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"rekor": {}, "fulcio": {}}, "'version'"),
        (_map(rekor={"url": "https://r"}), "'rekor.public_key_target'"),
        (_map(fulcio={"root_cert_target": "c"}), "'fulcio.url'"),
        (_map(fulcio=None), "'fulcio'"),
    ],
)
def test_service_map_missing_field_names_field_and_target(document: object, field: str) -> None:
    with pytest.raises(ServiceMapError) as caught:
        parse_service_map(json.dumps(document).encode(), "svc-map.json")
    assert f"Service map svc-map.json: missing required field {field}" == caught.value.message


def test_service_map_rejects_non_json() -> None:
    with pytest.raises(ServiceMapError, match="not valid JSON"):
        parse_service_map(b"{nope", "m")


def test_service_map_keeps_unknown_fields_and_applies_overrides() -> None:
    document = _map(
        rekor={"url": "https://r", "public_key_target": "k", "shard": 7},
        ctlog={"url": "https://ct"},
        overrides={
            "staging": {"rekor_url": "https://r.staging", "ctlog_url": "https://ct.s", "color": "red"}
        },
    )
    smap = parse_service_map(json.dumps(document).encode(), "m")
    staging = resolve_services(smap, "staging")
    assert staging["rekor"] == {"url": "https://r.staging", "public_key_target": "k", "shard": 7}
    assert staging["ctlog"] == {"url": "https://ct.s"}
    assert staging["extra_overrides"] == {"color": "red"}
    assert resolve_services(smap, None)["rekor"]["url"] == "https://r"
    assert referenced_targets(smap, "staging") == ["k", "c"]


def test_log_id_must_match_the_key() -> None:
    from stella_trust.demo.repository import rekor_keys

    pem, _ = rekor_keys()
    fact = public_key_facts("rekor-key-v1.pub", pem)
    assert fact is not None and fact.spki_sha256 == spki_sha256(pem)
    good = parse_service_map(service_map(pem), "m")
    endpoints = resolve_endpoints(
        good,
        None,
        {"rekor-key-v1.pub": fact},
        lambda n: match_name(n, ["rekor-key-v1.pub", "fulcio-chain.pem"]),
    )
    assert endpoints["rekor"]["log_id"] == fact.spki_sha256
    document = json.loads(service_map(pem))
    document["rekor"]["log_id"] = "00" * 32
    bad = parse_service_map(json.dumps(document).encode(), "m")
    with pytest.raises(ServiceMapError, match="does not match the SHA-256"):
        resolve_endpoints(
            bad,
            None,
            {"rekor-key-v1.pub": fact},
            lambda n: match_name(n, ["rekor-key-v1.pub", "fulcio-chain.pem"]),
        )


def test_file_fetcher_reads_and_404s(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"{}" * 10)
    fetcher = HttpxFetcher()
    assert fetcher.download_bytes((tmp_path / "a.json").as_uri(), 100) == b"{}" * 10
    with pytest.raises(tuf_exceptions.DownloadHTTPError) as caught:
        fetcher.download_bytes((tmp_path / "missing.json").as_uri(), 100)
    assert caught.value.status_code == 404
    with pytest.raises(tuf_exceptions.DownloadLengthMismatchError):
        fetcher.download_bytes((tmp_path / "a.json").as_uri(), 5)


def test_http_fetcher_sends_user_agent(server: FaultyServer) -> None:
    import http.server

    seen: list[str] = []
    original = http.server.SimpleHTTPRequestHandler.do_GET

    def spy(handler: http.server.SimpleHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("User-Agent", ""))
        original(handler)

    http.server.SimpleHTTPRequestHandler.do_GET = spy  # type: ignore[method-assign]
    try:
        with HttpxFetcher() as fetcher:
            fetcher.download_bytes(f"{server.url}/metadata/1.root.json", 100_000)
    finally:
        http.server.SimpleHTTPRequestHandler.do_GET = original  # type: ignore[method-assign]
    assert seen == ["stella-trust/0.1.0"]


def test_store_commit_prunes_and_keeps_previous(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    generations = []
    with store.lock(timeout=1):
        for n in range(4):
            work = store.begin(store.current())
            (work.targets_dir / "f").write_bytes(str(n).encode())
            generations.append(store.commit(work))
    current = store.current()
    assert current is not None and current.path == generations[-1].path
    assert (current.targets_dir / "f").read_bytes() == b"3"
    remaining = sorted(p.name for p in (tmp_path / "cache" / "generations").iterdir())
    assert remaining == sorted([generations[-2].path.name, generations[-1].path.name])


def test_store_begin_never_shares_writes_with_current(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    with store.lock(timeout=1):
        first = store.begin(None)
        (first.targets_dir / "f").write_bytes(b"old")
        first = store.commit(first)
        work = store.begin(first)
        assert (work.targets_dir / "f").stat().st_ino == (first.targets_dir / "f").stat().st_ino
        store.discard(work)
    assert (first.targets_dir / "f").read_bytes() == b"old"


def test_verify_root_chain_rejects_gap_and_wrong_signers(tmp_path: Path) -> None:
    demo = DemoRepository(tmp_path / "repo")
    demo.rotate("root")
    demo.rotate("root")
    history = tmp_path / "history"
    history.mkdir()
    for version in (2, 3):
        (history / f"{version}.root.json").write_bytes(demo.repo.root_bytes(version))
    root, _ = verify_root_chain(demo.repo.root_bytes(1), history)
    assert root.signed.version == 3
    (history / "3.root.json").write_bytes(demo.repo.root_bytes(2))
    with pytest.raises(CacheVerificationError, match="root v3"):
        verify_root_chain(demo.repo.root_bytes(1), history)
