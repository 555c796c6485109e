"""Mirrors through the real CLI (net/mirrors.py): real servers on 127.0.0.1 in front of one
origin, each mirror failing in its own way; the sync fails over, the cache holds only what
verified, health shows in `trust status` and the agent's metrics, and the next syncs behave."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, ok, refused
from tests.e2e.conftest import Client

FAULTS = [
    "connection-refused",
    "http-503",
    "stall-past-deadline",
    "tampered-timestamp",
    "rolled-back-snapshot",
]


@pytest.fixture
def closed_port() -> Iterator[str]:
    """A URL nothing listens on (bound, never listening: connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def stalled() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def mirror(demo: DemoRepository) -> Iterator[FaultyServer]:
    """A second server of the origin's files (faults injected per test)."""
    srv = FaultyServer(demo.repo.path).start()
    try:
        yield srv
    finally:
        srv.stop()


def cache_files(client: Client) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in client.cache.rglob("*") if p.is_file() and not p.is_symlink()}


def current_metadata(client: Client, name: str) -> bytes:
    return (client.cache / "current" / "metadata" / name).read_bytes()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failing_first_mirror_is_passed_over_and_the_next_syncs_behave(
    fault: str,
    client: Client,
    server: FaultyServer,
    mirror: FaultyServer,
    demo: DemoRepository,
    closed_port: str,
    stalled: str,
) -> None:
    first = {"connection-refused": closed_port, "stall-past-deadline": stalled}.get(fault, mirror.url)
    ok(client.init("--mirror", first))
    document = yaml.safe_load(client.config.read_text())["attestor"]["trust_repo"]
    assert document["mirrors"] == [first] and document["tuf_url"] == server.url
    client.set_config(download_deadline_seconds=1, request_timeout_seconds=5)
    held_snapshot = demo.repo.snapshot.signed.version
    old_snapshot = (demo.repo.metadata_dir / f"{held_snapshot}.snapshot.json").read_bytes()
    demo.repo.publish()
    demo.repo.publish()
    new_snapshot = demo.repo.snapshot.signed.version
    refused_bytes: bytes | None = None
    if fault == "http-503":
        mirror.inject("", "status", 503)
    elif fault == "tampered-timestamp":
        document = json.loads((demo.repo.metadata_dir / "timestamp.json").read_bytes())
        document["signed"]["version"] += 1  # the signatures no longer match
        refused_bytes = json.dumps(document).encode()
        mirror.inject("/metadata/timestamp.json", "body", refused_bytes)
    elif fault == "rolled-back-snapshot":
        mirror.inject(f"/metadata/{new_snapshot}.snapshot.json", "body", old_snapshot)
    server.take_requests()

    envelope = ok(client.run("sync", "--json")).envelope()
    result = envelope["result"]
    assert result["changed"] and result["versions"]["snapshot"] == new_snapshot
    assert [w for w in envelope["warnings"] if "passed over" in str(w)], envelope["warnings"]
    by_position = result["mirrors"]
    assert [m["url"] for m in by_position] == [first, server.url]
    assert by_position[0]["error"] and by_position[1]["error"] is None
    # the cache holds what verified from the anchor, and nothing the refused mirror sent
    assert (
        current_metadata(client, "snapshot.json")
        == (demo.repo.metadata_dir / f"{new_snapshot}.snapshot.json").read_bytes()
    )
    assert (
        current_metadata(client, "timestamp.json") == (demo.repo.metadata_dir / "timestamp.json").read_bytes()
    )
    if refused_bytes is not None:
        assert refused_bytes not in cache_files(client).values()
    status = ok(client.status()).json()
    assert status["freshness"]["state"] == "fresh"
    assert status["metadata"]["snapshot"]["version"] == new_snapshot
    health = status["mirrors"]
    assert [(m["position"], m["url"], m["healthy"]) for m in health] == [
        (1, first, False),
        (2, server.url, True),
    ]
    assert health[0]["last_error"] and health[0]["last_error_at"] and health[1]["last_success"]
    text = ok(client.run("status")).out
    assert "Mirrors (tried in order)" in text
    assert f"1. {first}  FAILING" in text and f"2. {server.url}  ok" in text

    # the next five syncs: idle, exactly two requests on the mirror that serves them. The
    # rolled-back mirror serves the held state consistently, so it serves idle syncs again.
    serving, other = (mirror, server) if fault == "rolled-back-snapshot" else (server, mirror)
    server.take_requests()
    mirror.take_requests()
    for _ in range(5):
        idle = ok(client.run("sync", "--json")).json()
        assert not idle["changed"] and idle["downloaded"] == []
        assert serving.take_requests() == ["/metadata/2.root.json", "/metadata/timestamp.json"]
        assert len(other.take_requests()) <= 2  # the failing mirror is asked first, every sync
    if fault == "rolled-back-snapshot":
        assert [m["healthy"] for m in ok(client.status()).json()["mirrors"]] == [True, True]
    if fault in ("http-503", "tampered-timestamp"):
        mirror.heal()  # the mirror recovers: it serves the next sync alone, and shows healthy
        mirror.take_requests()
        ok(client.run("sync"))
        assert mirror.take_requests() == ["/metadata/2.root.json", "/metadata/timestamp.json"]
        assert server.take_requests() == []
        assert [m["healthy"] for m in ok(client.status()).json()["mirrors"]] == [True, True]


def test_every_mirror_failing_is_one_line_and_the_held_trust_stays(
    client: Client, server: FaultyServer, mirror: FaultyServer, demo: DemoRepository, closed_port: str
) -> None:
    ok(client.init("--mirror", closed_port, "--mirror", mirror.url))
    before = ok(client.status()).json()
    held = cache_files(client)
    demo.repo.publish()
    mirror.inject("", "status", 502)
    server.inject("", "status", 503)
    error, hint = refused(client.run("sync"), 1, "every mirror failed (3 tried in order)", closed_port)
    assert mirror.url in error and server.url in error and "502" in error and "503" in error
    assert "trust status" in hint and "cached trust is unchanged" in hint
    envelope = client.run("sync", "--json").envelope()
    assert not envelope["ok"] and envelope["error"]["message"].startswith("every mirror failed")
    after = ok(client.status()).json()
    assert after["metadata"] == before["metadata"] and after["freshness"]["state"] == "fresh"
    assert [m["healthy"] for m in after["mirrors"]] == [False, False, False]
    assert {p: b for p, b in cache_files(client).items() if p.name not in ("state.json", "lock")} == {
        p: b for p, b in held.items() if p.name not in ("state.json", "lock")
    }
    # the agent's metrics say the same, per mirror
    metrics = client.home / "trust.prom"
    client.set_config(metrics_path=str(metrics))
    assert client.run("agent", "--once").code == 1
    samples = {
        (s.name, s.labels.get("position")): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
        if s.name.startswith("stella_trust_mirror")
    }
    assert [samples[("stella_trust_mirror_up", p)] for p in "123"] == [0.0, 0.0, 0.0]
    assert ("stella_trust_mirror_last_error_timestamp_seconds", "3") in samples
    server.heal()
    assert client.run("agent", "--once").code == 0
    samples = {
        (s.name, s.labels.get("mirror")): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
        if s.name == "stella_trust_mirror_up"
    }
    assert samples == {
        ("stella_trust_mirror_up", closed_port): 0.0,
        ("stella_trust_mirror_up", mirror.url): 0.0,
        ("stella_trust_mirror_up", server.url): 1.0,
    }


def test_init_by_digest_fetches_the_root_through_the_mirrors(
    client: Client, server: FaultyServer, closed_port: str, demo: DemoRepository
) -> None:
    import hashlib

    digest = hashlib.sha256(demo.root_path.read_bytes()).hexdigest()
    server.take_requests()
    ok(
        client.run(
            "init",
            "--tuf-url",
            server.url,
            "--mirror",
            closed_port,
            "--root-sha256",
            digest,
            "--pin",
            "rekor-key-v1",
        )
    )
    assert "/metadata/1.root.json" in server.take_requests()
    assert ok(client.status()).json()["freshness"]["state"] == "fresh"
