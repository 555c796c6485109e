"""Transparency-log tiles in sealed snapshots (issue 14), end to end with the real CLI.

A synthetic tile-based log (C2SP tlog-tiles, Ed25519 checkpoint key) is served on
127.0.0.1 and listed in the `trusted_root.json` of a TUF repository we build, beside
staging's real Rekor v1 log (skipped: not tile-based) and staging's real Rekor v2 log
(retired here, so not fetched; its real bundle still verifies). A connected host exports
with `--depth`, an air-gapped host imports; status, inspect and verify show the sealed state.
Every refusal is one line and leaves the host's trust and log state as they were.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stella_trust._internal.bundle.archive import Entry, write_archive
from stella_trust._internal.bundle.layout import manifest_bytes
from stella_trust._internal.sigstore.sealedlogs import origin_of
from stella_trust._internal.sigstore.signednote import ed25519_key_hash
from stella_trust.repository import Repository
from tests.conftest import Client, FaultyServer, Result, clean_env, ok
from tests.tlog_log import ServedLog, SyntheticLog, serve

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
ENTRIES = 3000
DEPTH = 600
REKOR_V2_CASE = next(
    case for case in json.loads((STAGING / "cases.json").read_text()) if "Rekor v2" in case["note"]
)


@dataclass
class World:
    log: SyntheticLog
    log_dir: Path
    served: ServedLog
    repo: Repository
    connected: Client
    tmp: Path

    def export(self, name: str, *extra: str) -> Path:
        bundle = self.tmp / name
        ok(self.connected.run("snapshot", "export", "--out", str(bundle), "--depth", str(DEPTH), *extra))
        return bundle

    def publish_log(self, size: int | None = None) -> None:
        self.log.write(self.log_dir, size)

    def airgapped(self, name: str = "airgap") -> Client:
        home = self.tmp / name
        home.mkdir()
        env = clean_env(STELLA_TUF_OFFLINE_MODE="1")
        host = Client(home=home, url=(self.tmp / "nowhere").as_uri(), root=self.connected.root, env=env)
        ok(host.run("init", "--tuf-url", host.url, "--offline", "--root", str(host.root), "--no-sync"))
        return host


def trusted_root(log: SyntheticLog, base_url: str) -> bytes:
    """Staging's trusted root, its Rekor v2 log retired at the end of 2025, plus ours."""
    document = json.loads((STAGING / "trusted_root.json").read_text())
    for tlog in document["tlogs"]:
        if tlog["publicKey"]["keyDetails"] == "PKIX_ED25519":
            tlog["publicKey"]["validFor"]["end"] = "2025-12-31T00:00:00Z"
    key_id = ed25519_key_hash(origin_of(base_url), log.public_key)
    document["tlogs"].append(
        {
            "baseUrl": base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": base64.b64encode(log.public_key_der).decode(),
                "keyDetails": "PKIX_ED25519",
                "validFor": {"start": "2025-01-01T00:00:00Z"},
            },
            "logId": {"keyId": base64.b64encode(key_id).decode()},
        }
    )
    return json.dumps(document, indent=2).encode()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    served = serve(log_dir)
    try:
        log = SyntheticLog(ENTRIES, origin_of(served.base_url))
        log.write(log_dir)
        repo = Repository.create(tmp_path / "repository")
        repo.add_target("trusted_root.json", trusted_root(log, served.base_url))
        repo.publish()
        with FaultyServer(repo.path) as server:
            home = tmp_path / "connected"
            home.mkdir()
            connected = Client(home=home, url=server.url, root=repo.metadata_dir / "1.root.json")
            ok(connected.run("init", "--tuf-url", connected.url, "--root", str(connected.root)))
            yield World(log, log_dir, served, repo, connected, tmp_path)
    finally:
        served.stop()


def one_line(result: Result, words: str, code: int = 1) -> None:
    assert result.code == code, result
    assert result.err.startswith("error: ") and words in result.err, result.err
    assert "Traceback" not in result.err and result.err.count("\n") <= 2, result.err


def sealed_of(host: Client) -> list[dict[str, Any]]:
    sealed: list[dict[str, Any]] = ok(host.status()).json()["sealed_logs"]
    return sealed


def without_age(sealed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in log.items() if k != "age_seconds"} for log in sealed]


def repack(bundle: Path, out: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """The same bundle with members changed (the manifest kept consistent): hostile input
    that only the log-state verification can catch."""
    with bundle.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as plain:
        data = plain.read()
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            members[member.name] = handle.read()
    manifest = json.loads(members.pop("manifest.json"))
    change(members)
    manifest["files"] = [
        {"path": name, "length": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        for name, blob in members.items()
    ]
    entries = [Entry(f["path"], f["length"], f["sha256"], data=members[f["path"]]) for f in manifest["files"]]
    write_archive(out, manifest_bytes(manifest), entries, 0.0, None)
    return out


def log_member(world: World, suffix: str) -> str:
    log_id = ed25519_key_hash(world.log.origin, world.log.public_key).hex()
    return f"tlogs/{log_id}/{suffix}"


def test_export_import_status_inspect_verify(world: World) -> None:
    exported = ok(
        world.connected.run(
            "snapshot", "export", "--out", str(world.tmp / "t.tar.zst"), "--depth", str(DEPTH), "--json"
        )
    )
    envelope = exported.envelope()
    sealed = envelope["result"]["sealed_logs"]
    assert [(s["origin"], s["tree_size"]) for s in sealed] == [(world.log.origin, ENTRIES)]
    assert sealed[0]["depth"] >= DEPTH and sealed[0]["root_hash"] == world.log.root().hex()
    assert any("rekor.sigstage.dev: not a tile-based log" in w for w in envelope["warnings"])

    host = world.airgapped()
    imported = ok(host.run("import", str(world.tmp / "t.tar.zst"), "--json")).json()
    assert imported["sealed_logs"][0]["tree_size"] == ENTRIES
    held = sealed_of(host)
    assert held[0]["tree_size"] == ENTRIES and held[0]["depth"] >= DEPTH and "age_seconds" in held[0]
    assert f"sealed log {world.log.origin}: tree size {ENTRIES}" in ok(host.run("status")).out

    inspected = ok(host.run("snapshot", "inspect", str(world.tmp / "t.tar.zst"), "--json")).json()
    assert inspected["verification"]["sealed_logs"][0]["tree_size"] == ENTRIES
    assert inspected["manifest"]["tiles"][0]["origin"] == world.log.origin

    artifact = STAGING / "bundles" / REKOR_V2_CASE["artifact"]
    verified = ok(
        host.run(
            "verify",
            "--bundle",
            str(STAGING / "bundles" / REKOR_V2_CASE["bundle"]),
            "--certificate-identity",
            REKOR_V2_CASE["identity"],
            "--certificate-oidc-issuer",
            REKOR_V2_CASE["issuer"],
            str(artifact),
            "--json",
        )
    ).json()
    assert verified["verified"] is True
    assert verified["sealed_log_checks"] == [
        "log f30d5a999d92e662…: no sealed state on this host; sealed-log check not made"
    ]


def test_depth_zero_carries_no_log_state(world: World) -> None:
    bundle = world.tmp / "plain.tar.zst"
    result = ok(world.connected.run("snapshot", "export", "--out", str(bundle), "--json")).json()
    assert result["sealed_logs"] == []
    host = world.airgapped()
    ok(host.run("import", str(bundle)))
    assert sealed_of(host) == []
    assert not (host.cache / "tlogs").exists()


def _flip_level0_tile(members: dict[str, bytes], world: World) -> None:
    name = log_member(world, "tile/0/011")
    members[name] = bytes([members[name][0] ^ 1]) + members[name][1:]


def _other_key(members: dict[str, bytes], world: World) -> None:
    members[log_member(world, "checkpoint")] = world.log.checkpoint(key=Ed25519PrivateKey.generate()).encode()


def _root_tiles_do_not_give(members: dict[str, bytes], world: World) -> None:
    forged = world.log.checkpoint(root=hashlib.sha256(b"another tree").digest())
    members[log_member(world, "checkpoint")] = forged.encode()


def _truncated_tile(members: dict[str, bytes], world: World) -> None:
    name = log_member(world, "tile/0/011")
    members[name] = members[name][:100]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_flip_level0_tile, "does not verify"),
        (_other_key, "checkpoint"),
        (_root_tiles_do_not_give, "root"),
        (_truncated_tile, "tile/0/011: 100 bytes"),
    ],
    ids=["tampered-tile", "checkpoint-by-another-key", "tiles-do-not-hash-to-root", "truncated-tile"],
)
def test_bad_log_state_refuses_the_whole_import(
    world: World, change: Callable[[dict[str, bytes], World], None], words: str
) -> None:
    host = world.airgapped()
    ok(host.run("import", str(world.export("first.tar.zst"))))
    before = ok(host.status()).json()
    world.log.append(500)  # a newer state, so the bad bundle would otherwise be imported
    world.publish_log()
    world.repo.publish()  # and newer TUF trust with it
    ok(world.connected.run("sync"))
    good = world.export("second.tar.zst")
    bad = repack(good, world.tmp / "bad.tar.zst", lambda members: change(members, world))
    one_line(host.run("import", str(bad)), words)
    after = ok(host.status()).json()
    assert without_age(after["sealed_logs"]) == without_age(before["sealed_logs"])
    assert after["metadata"] == before["metadata"]
    ok(host.run("import", str(good)))  # the good one still imports afterwards
    assert sealed_of(host)[0]["tree_size"] == ENTRIES + 500


def test_a_log_state_is_never_rolled_back_nor_forked(world: World) -> None:
    older = world.export("older.tar.zst")
    world.log.append(2000)
    world.publish_log()
    newer = world.export("newer.tar.zst")
    host = world.airgapped()
    ok(host.run("import", str(newer)))
    one_line(host.run("import", str(older)), "log state rollback")
    assert sealed_of(host)[0]["tree_size"] == ENTRIES + 2000

    fork = SyntheticLog(ENTRIES + 2000, world.log.origin, world.log.key, entry=lambda i: b"forked %d" % i)
    fork.write(world.log_dir)
    forked = world.export("forked.tar.zst")
    one_line(host.run("import", str(forked)), "another history")
    assert sealed_of(host)[0]["root_hash"] == world.log.root().hex()


def test_a_log_server_that_dribbles_or_never_ends_is_stopped(world: World) -> None:
    world.served.inject("tile/0/010", "endless")
    out = world.tmp / "endless.tar.zst"
    one_line(world.connected.run("snapshot", "export", "--out", str(out), "--depth", str(DEPTH)), "limit")
    assert not out.exists()
    world.served.heal()
    world.served.inject("tile/0/010", "dribble", 0.5)
    world.connected.set_config(download_deadline_seconds=2)
    result = world.connected.run("snapshot", "export", "--out", str(out), "--depth", str(DEPTH), timeout=30)
    one_line(result, "not complete after 2s")
    assert not out.exists()
