"""Transparency-log tiles in sealed snapshots (issues 14, 20, 21), end to end with the real CLI.

A synthetic tile-based log (C2SP tlog-tiles, Ed25519 checkpoint key) is served on
127.0.0.1 and listed in the `trusted_root.json` of a TUF repository we build, beside
staging's real Rekor v1 log (skipped: not tile-based) and staging's real Rekor v2 log
(retired here, so not fetched; its real bundle still verifies). A connected host exports
with `--depth`, an air-gapped host imports; status, inspect and verify show the sealed state.
Entry `PLANTED` of the log is a real managed-key Sigstore entry (tests/tlog_bundle.py), so
`trust verify --key` meets the sealed state too. Every refusal is one line and leaves the
host's trust and log state as they were.
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
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stella_trust._internal.bundle.layout import Entry, write_archive
from stella_trust._internal.bundle.manifest import manifest_bytes
from stella_trust._internal.sigstore.sealedlogs import origin_of
from stella_trust._internal.sigstore.signednote import ed25519_key_hash
from stella_trust.repository import Repository
from tests.conftest import FaultyServer, Result, clean_env, ok, refused
from tests.e2e.conftest import Client
from tests.tlog_bundle import bundle_for, entry_body, signer_pem
from tests.tlog_log import ServedLog, SyntheticLog, default_entry, serve

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
ENTRIES = 3000
DEPTH = 600
PLANTED = 2900  # a real managed-key Sigstore entry (the others are b"entry %d")
ARTIFACT = b"an artifact the host verifies\n"
INTEGRATED = 1_780_000_000  # 2026-05-28, inside the synthetic log key's validFor
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
    signer: ec.EllipticCurvePrivateKey  # signed the artifact in entry PLANTED
    signature: bytes

    def export(self, name: str, *extra: str, depth: int = DEPTH) -> Path:
        bundle = self.tmp / name
        ok(self.connected.run("snapshot", "export", "--out", str(bundle), "--depth", str(depth), *extra))
        return bundle

    @property
    def log_id(self) -> bytes:
        return ed25519_key_hash(self.log.origin, self.log.public_key)

    def sigstore_bundle(self, name: str, log: SyntheticLog | None = None, **forged: Any) -> Path:
        """A managed-key bundle for entry PLANTED of `log` (default: the honest log)."""
        path = self.tmp / name
        path.write_bytes(
            bundle_for(log or self.log, PLANTED, ARTIFACT, self.signature, self.log_id, INTEGRATED, **forged)
        )
        return path

    def verify_key(
        self, host: Client, bundle: Path, *extra: str, env: dict[str, str] | None = None
    ) -> Result:
        key = self.tmp / "signer.pem"
        key.write_bytes(signer_pem(self.signer))
        artifact = self.tmp / "artifact.txt"
        artifact.write_bytes(ARTIFACT)
        return host.run("verify", "--bundle", str(bundle), "--key", str(key), str(artifact), *extra, env=env)

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
    """Staging's trusted root, its Rekor v2 log retired at the end of 2025, plus ours, served
    at `base_url` (its log ID binds the log's own name and key, not the URL)."""
    document = json.loads((STAGING / "trusted_root.json").read_text())
    for tlog in document["tlogs"]:
        if tlog["publicKey"]["keyDetails"] == "PKIX_ED25519":
            tlog["publicKey"]["validFor"]["end"] = "2025-12-31T00:00:00Z"
    key_id = ed25519_key_hash(log.origin, log.public_key)
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
        signer = ec.generate_private_key(ec.SECP256R1())
        body, signature = entry_body(ARTIFACT, signer)
        log = SyntheticLog(
            ENTRIES, origin_of(served.base_url), entry=lambda i: body if i == PLANTED else default_entry(i)
        )
        log.write(log_dir)
        repo = Repository.create(tmp_path / "repository")
        repo.add_target("trusted_root.json", trusted_root(log, served.base_url))
        repo.publish()
        with FaultyServer(repo.path) as server:
            home = tmp_path / "connected"
            home.mkdir()
            connected = Client(home=home, url=server.url, root=repo.metadata_dir / "1.root.json")
            ok(connected.run("init", "--tuf-url", connected.url, "--root", str(connected.root)))
            yield World(log, log_dir, served, repo, connected, tmp_path, signer, signature)
    finally:
        served.stop()


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
    refused(host.run("import", str(bad)), 1, words)
    after = ok(host.status()).json()
    assert without_age(after["sealed_logs"]) == without_age(before["sealed_logs"])
    assert after["metadata"] == before["metadata"]
    ok(host.run("import", str(good)))  # the good one still imports afterwards
    assert sealed_of(host)[0]["tree_size"] == ENTRIES + 500


def warned(result: Result, words: str) -> str:
    """The one warning line (stderr) that holds `words`."""
    lines = [line for line in result.err.splitlines() if line.startswith("warning: ") and words in line]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


def versions(host: Client) -> dict[str, int]:
    held: dict[str, int] = ok(host.status()).json()["metadata"]
    return held


def new_trust(world: World) -> None:
    """A newer TUF publication (another target), synced by the connected host."""
    world.repo.add_target(f"note-{len(world.repo.targets.signed.targets)}.txt", b"newer trust\n")
    world.repo.publish()
    ok(world.connected.run("sync"))


@pytest.mark.slow
def test_an_older_log_state_never_blocks_a_tuf_update(world: World) -> None:
    """Issue 20: newer TUF trust carried with an older, genuine log state is imported; the
    host keeps its newer log state and says so."""
    host = world.airgapped()
    world.log.append(2000)
    world.publish_log()
    ok(host.run("import", str(world.export("newer.tar.zst"))))
    before = sealed_of(host)
    assert before[0]["tree_size"] == ENTRIES + 2000
    new_trust(world)
    world.publish_log(ENTRIES)  # a log mirror that lags: its (genuine) checkpoint is older
    older = world.export("older-log-newer-trust.tar.zst")
    result = ok(host.run("import", str(older)))
    line = warned(result, "older than the held one")
    assert (
        f"tree size {ENTRIES})" in line and f"tree size {ENTRIES + 2000}" in line and "kept the held" in line
    )
    assert versions(host) == ok(world.connected.status()).json()["metadata"]  # the TUF update arrived
    assert without_age(sealed_of(host)) == without_age(before)  # and the log state did not go back
    assert json.loads(ok(host.run("import", str(older), "--json")).out)["warnings"]  # said again, no change
    assert without_age(sealed_of(host)) == without_age(before)


@pytest.mark.slow
def test_a_fork_is_refused_for_the_log_alone_with_both_roots(world: World) -> None:
    """Issue 21: held tree 3000; the log rewrites entry 100 and grows to 3500; a --depth 10
    export cannot prove the growth, but the level-1 edge tiles both states hold disagree:
    forked history, both roots printed, the held state kept. The TUF update it came with is
    imported (a fork is evidence against the log, not against the repository)."""
    host = world.airgapped()
    ok(host.run("import", str(world.export("held.tar.zst", depth=10))))
    held_root = world.log.root().hex()
    fork = SyntheticLog(
        ENTRIES + 500,
        world.log.origin,
        world.log.key,
        entry=lambda i: (
            b"rewritten" if i == 100 else world.log.entries[i] if i < ENTRIES else default_entry(i)
        ),
    )
    fork.write(world.log_dir)
    new_trust(world)
    result = ok(host.run("import", str(world.export("forked.tar.zst", depth=10))))
    line = warned(result, "forked history")
    assert f"held root {held_root} (tree size {ENTRIES})" in line
    assert f"carried root {fork.root().hex()} (tree size {ENTRIES + 500})" in line
    assert "tile/1/000.p/11 hash 0" in line and "the carried log state was refused" in line
    assert versions(host) == ok(world.connected.status()).json()["metadata"]
    held = sealed_of(host)
    assert held[0]["root_hash"] == held_root and held[0]["tree_size"] == ENTRIES
    ok(host.run("status"))  # the next reads: the held state still verifies
    assert sealed_of(host)[0]["root_hash"] == held_root

    same_size = SyntheticLog(ENTRIES, world.log.origin, world.log.key, entry=lambda i: b"forked %d" % i)
    same_size.write(world.log_dir)
    line = warned(ok(host.run("import", str(world.export("same-size.tar.zst", depth=10)))), "forked history")
    assert f"carried root {same_size.root().hex()} (tree size {ENTRIES})" in line
    assert sealed_of(host)[0]["root_hash"] == held_root


def test_growth_replaces_the_held_state_only_when_its_tiles_prove_it(world: World) -> None:
    host = world.airgapped()
    ok(host.run("import", str(world.export("held.tar.zst", depth=10))))
    world.log.append(500)
    world.publish_log()
    line = warned(ok(host.run("import", str(world.export("shallow.tar.zst", depth=10)))), "cannot be proven")
    needed = int(line.split("--depth ")[1].split()[0])
    assert sealed_of(host)[0]["tree_size"] == ENTRIES  # not replaced on "cannot tell"
    result = ok(host.run("import", str(world.export("proof.tar.zst", depth=needed))))
    assert "warning" not in result.err
    assert sealed_of(host)[0]["tree_size"] == ENTRIES + 500
    assert sealed_of(host)[0]["root_hash"] == world.log.root().hex()


def test_a_moved_log_url_keeps_the_held_state(world: World) -> None:
    """Issue 20: a TUF update lists the same log (same key, same log ID) at another URL. The
    held state stays valid — its checkpoint names the log, not the URL — for status, verify,
    the next import and the ones after."""
    host = world.airgapped()
    ok(host.run("import", str(world.export("before-move.tar.zst"))))
    before = sealed_of(host)
    moved = serve(world.log_dir)  # the same log, another port: another URL
    try:
        assert moved.base_url != world.served.base_url
        world.repo.add_target("trusted_root.json", trusted_root(world.log, moved.base_url))
        world.repo.publish()
        ok(world.connected.run("sync"))
        ok(host.run("import", str(world.export("moved-no-tiles.tar.zst", depth=0))))
        for _ in range(2):  # this read and the next
            held = sealed_of(host)
            assert without_age(held) == [{**without_age(before)[0], "base_url": moved.base_url}]
            verified = ok(world.verify_key(host, world.sigstore_bundle("honest.json"), "--json")).json()
            assert verified["sealed_log_checks"] == [
                f"{world.log.origin}: entry {PLANTED} is at its index in the sealed tree (size {ENTRIES})"
            ]
        world.served.stop()  # the old URL is gone: the next export reads the log at the new one
        world.log.append(500)
        world.publish_log()
        ok(host.run("import", str(world.export("after-move.tar.zst"))))
        assert sealed_of(host)[0]["tree_size"] == ENTRIES + 500
        assert sealed_of(host)[0]["origin"] == world.log.origin
        verified = ok(world.verify_key(host, world.sigstore_bundle("honest-later.json"), "--json")).json()
        assert verified["sealed_log_checks"][0].endswith(f"sealed tree (size {ENTRIES + 500})")
    finally:
        moved.stop()


FORGED_CLAIMS: dict[str, dict[str, Any]] = {
    "as-signed": {},
    "logId-random-keeping-the-key-hint": {"named_log_id": "keep-hint"},
    "logId-random-with-a-matching-key-hint": {"named_log_id": "rehint"},
    "logIndex-7-signed-by-the-log": {"signed_index": 7},
    "checkpoint-size-beyond-the-sealed-tree": {"checkpoint_size": 10**9},
}


def test_a_forked_entry_is_refused_whatever_the_bundle_claims(world: World) -> None:
    """Issue 21: the log shows one victim a fork in which entry PLANTED is another signature
    (valid proof, checkpoint signed by the log's key: sigstore-python accepts it). The host's
    sealed state holds the honest entry there. Whatever the bundle claims about its log, index
    or tree size (FORGED_CLAIMS, each once), the check runs against the log whose key signed
    it, at the proved index, and refuses it in one line; the host is unchanged after each."""
    host = world.airgapped()
    ok(host.run("import", str(world.export("honest.tar.zst"))))
    before = ok(host.status()).json()
    attacker = ec.generate_private_key(ec.SECP256R1())
    body, signature = entry_body(ARTIFACT, attacker)
    fork = SyntheticLog(
        ENTRIES,
        world.log.origin,
        world.log.key,
        entry=lambda i: body if i == PLANTED else world.log.entries[i],
    )
    key = world.tmp / "attacker.pem"
    key.write_bytes(signer_pem(attacker))
    artifact = world.tmp / "artifact.txt"
    artifact.write_bytes(ARTIFACT)
    random_id = hashlib.sha256(b"random").digest()
    for name, claims in FORGED_CLAIMS.items():
        forged = dict(claims)
        if forged.get("named_log_id") == "keep-hint":
            forged["named_log_id"] = world.log_id[:4] + random_id[4:]
        elif forged.get("named_log_id") == "rehint":
            forged.update(named_log_id=random_id, hint=random_id[:4])
        bundle = world.tmp / f"forked-{name}.json"
        bundle.write_bytes(bundle_for(fork, PLANTED, ARTIFACT, signature, world.log_id, INTEGRATED, **forged))
        result = host.run("verify", "--bundle", str(bundle), "--key", str(key), str(artifact))
        refused(result, 1, "verification failed: log inclusion")
        assert "no sealed state" not in result.out, name
        after = ok(host.status()).json()
        assert without_age(after["sealed_logs"]) == without_age(before["sealed_logs"]), name
        assert after["metadata"] == before["metadata"], name
    debugging = {**host.env, "STELLA_DEBUG": "1"}
    honest = ok(world.verify_key(host, world.sigstore_bundle("honest.json"), "--json", env=debugging))
    assert honest.json()["sealed_log_checks"] == [
        f"{world.log.origin}: entry {PLANTED} is at its index in the sealed tree (size {ENTRIES})"
    ]
    # a managed key's artifact is its bytes: verified in the CLI's own process, never piped
    assert "debug: sigstore-python's checks run in this process" in honest.err


@pytest.mark.slow
def test_a_fork_below_the_sealed_depth_in_a_grown_tree_is_refused_by_verify(world: World) -> None:
    """Issue 21, the residual: the host holds the log at 3500 entries (depth 10: entries 3328..
    3499). The log rewrites entry PLANTED (2900, far below that depth) to another signer's
    signature and grows to 4000: the bundle's tree is larger than the sealed one, so its root
    cannot be compared, and its entry is not in the sealed tiles — but its proof's ancestors
    meet the sealed level-1 edge tile. `trust verify` refuses it in one line naming both roots;
    the host's trust and log state are unchanged, honest bundles still verify (saying which
    sealed hashes they were compared with), and the next honest import still works."""
    world.log.append(500)
    world.publish_log()
    host = world.airgapped()
    ok(host.run("import", str(world.export("held.tar.zst", depth=10))))
    before = ok(host.status()).json()
    held_size, held_root = world.log.size, world.log.root().hex()
    assert before["sealed_logs"][0]["tree_size"] == held_size and before["sealed_logs"][0]["depth"] == 172
    attacker = ec.generate_private_key(ec.SECP256R1())
    body, signature = entry_body(ARTIFACT, attacker)
    honest = list(world.log.entries)

    def forked_bundle(name: str, size: int, index: int) -> Path:
        fork = SyntheticLog(
            size,
            world.log.origin,
            world.log.key,
            entry=lambda i: body if i == index else honest[i] if i < held_size else default_entry(i),
        )
        path = world.tmp / name
        path.write_bytes(bundle_for(fork, index, ARTIFACT, signature, world.log_id, INTEGRATED))
        return path

    key = world.tmp / "attacker.pem"
    key.write_bytes(signer_pem(attacker))
    artifact = world.tmp / "artifact.txt"
    artifact.write_bytes(ARTIFACT)
    forked = forked_bundle("forked.json", 4000, PLANTED)
    fork_root = base64.b64decode(
        json.loads(forked.read_text())["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["rootHash"]
    ).hex()
    result = host.run("verify", "--bundle", str(forked), "--key", str(key), str(artifact))
    _, hint = refused(
        result,
        1,
        "verification failed: log inclusion",
        "forked history",
        f"held root {held_root} (tree size {held_size})",
        f"the bundle's checkpoint root {fork_root} (tree size 4000)",
        "they disagree at tile/1/000.p/13 hash 11 (entries [2816, 3072))",  # PLANTED's ancestor
    )
    assert "do not use the artifact" in hint and "report it to the log's operator" in hint
    after = ok(host.status()).json()
    assert without_age(after["sealed_logs"]) == without_age(before["sealed_logs"])
    assert after["metadata"] == before["metadata"]

    world.log.append(500)  # the honest log, grown the same: its entry checks against the same hashes
    verified = ok(world.verify_key(host, world.sigstore_bundle("honest.json"), "--json")).json()
    assert verified["sealed_log_checks"] == [
        f"{world.log.origin}: entry {PLANTED} is in the sealed tree (size {held_size}): its tree "
        f"(size 4000) agrees with it on entries [0, 3072) (6 sealed hashes compared)"
    ]
    # a forked entry past 4096: none of its proof's hashes is sealed here, and it is said
    unreachable = forked_bundle("forked-unreachable.json", 4300, 4200)
    result = ok(host.run("verify", "--bundle", str(unreachable), "--key", str(key), str(artifact)))
    assert (
        f"{world.log.origin}: sealed-log check not made: its tree (size 4300) is newer than the sealed "
        f"one (size {held_size}); none of the hashes its inclusion proof gives is sealed"
    ) in result.out

    world.publish_log()  # the next honest import: the held state grows, the fork stays refused
    ok(host.run("import", str(world.export("grown.tar.zst", depth=700))))
    assert sealed_of(host)[0]["tree_size"] == 4000
    assert sealed_of(host)[0]["root_hash"] == world.log.root().hex()
    verified = ok(world.verify_key(host, world.sigstore_bundle("honest-after.json"), "--json")).json()
    assert verified["sealed_log_checks"] == [
        f"{world.log.origin}: the bundle's checkpoint (size 4000) is consistent with the sealed tree "
        "(size 4000)"
    ]
    result = host.run("verify", "--bundle", str(forked), "--key", str(key), str(artifact))
    refused(result, 1, "verification failed: log inclusion", "not consistent with the sealed log")


def _edit_staging_entry(edit: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads((STAGING / "bundles" / REKOR_V2_CASE["bundle"]).read_text())
    edit(document["verificationMaterial"]["tlogEntries"][0])
    return json.dumps(document).encode()


def test_the_real_rekor_v2_bundle_with_an_edited_log_id_or_index_is_refused(world: World) -> None:
    """Issue 21, through the CLI: staging's real Rekor v2 bundle, its unsigned `logId` or
    `logIndex` edited, is refused in one line; the host's trust and log state are untouched
    and the unedited bundle still verifies (the full list of edits: test_sigstore_verify)."""
    host = world.airgapped()
    ok(host.run("import", str(world.export("t.tar.zst"))))
    before = ok(host.status()).json()

    def other_log_id(entry: dict[str, Any]) -> None:
        raw = base64.b64decode(entry["logId"]["keyId"])
        entry["logId"]["keyId"] = base64.b64encode(raw[:4] + bytes(28)).decode()

    def index_7(entry: dict[str, Any]) -> None:
        entry["logIndex"] = "7"

    case = REKOR_V2_CASE
    for edit, words in ((other_log_id, "which the trust does not hold"), (index_7, "logIndex 7")):
        bundle = world.tmp / "edited.json"
        bundle.write_bytes(_edit_staging_entry(edit))
        identity = ("--certificate-identity", case["identity"], "--certificate-oidc-issuer", case["issuer"])
        result = host.run(
            "verify", "--bundle", str(bundle), *identity, str(STAGING / "bundles" / case["artifact"])
        )
        refused(result, 1, words)
        assert "hint: " in result.err
        after = ok(host.status()).json()
        assert without_age(after["sealed_logs"]) == without_age(before["sealed_logs"])
        assert after["metadata"] == before["metadata"]
        ok(
            host.run(
                "verify",
                "--bundle",
                str(STAGING / "bundles" / case["bundle"]),
                *identity,
                str(STAGING / "bundles" / case["artifact"]),
            )
        )


def test_a_log_server_that_dribbles_or_never_ends_is_stopped(world: World) -> None:
    world.served.inject("tile/0/010", "endless")
    out = world.tmp / "endless.tar.zst"
    refused(world.connected.run("snapshot", "export", "--out", str(out), "--depth", str(DEPTH)), 1, "limit")
    assert not out.exists()
    world.served.heal()
    world.served.inject("tile/0/010", "dribble", 0.5)
    world.connected.set_config(download_deadline_seconds=2)
    result = world.connected.run("snapshot", "export", "--out", str(out), "--depth", str(DEPTH), timeout=30)
    refused(result, 1, "not complete after 2s")
    assert not out.exists()
