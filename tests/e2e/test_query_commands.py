"""`trust sync` says what changed, and `trust diff`, `trust get`, `trust keys` (issue 12,
items 4 and 6), through the real CLI in subprocesses against a served repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository, spki_sha256
from stella_trust.repository.serve import RepositoryServer
from tests.conftest import ok
from tests.e2e.conftest import Client

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore"
PUBLIC_GOOD = FIXTURES / "public-good-2025-10"
SIGN_OFF = "2025-10-20 12:00:00"
REKOR_LOG_ID = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")


def raw(client: Client, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with stdout as bytes (`trust get` is binary-safe)."""
    return subprocess.run(client.argv(*args), capture_output=True, env=client.env, timeout=60, check=False)


# ---- sync and diff say what changed ---------------------------------------------------------
def test_rekor_key_rotation_is_said_by_sync_and_by_diff(synced: Client, demo: DemoRepository) -> None:
    demo.switch_to_rekor_v2()
    result = ok(synced.run("sync", "--json")).json()
    assert result["changed"] and result["downloaded"] == ["sigstore-services-v1.json"]
    changes = result["changes"]
    assert changes[0].startswith("Rekor key changed: rekor-key-v1.pub -> rekor-key-v2.pub (log ID ")
    assert spki_sha256(demo.rekor_v2)[:16] in changes[0]
    assert changes[1].startswith("target changed: sigstore-services-v1.json (sha256 ")  # the download

    diff = ok(synced.run("diff", "--json")).json()
    assert diff["changes"] == changes
    assert diff["previous"]["verified"] is True
    assert diff["targets"] == {"added": [], "removed": [], "changed": ["sigstore-services-v1.json"]}
    assert diff["roles"]["targets"] == {"before": 2, "after": 3}
    assert diff["roles"]["root"] == {"before": 1, "after": 1}
    text = ok(synced.run("diff")).out
    assert (
        "  targets    v2 -> v3" in text
        and "  Rekor key changed: rekor-key-v1.pub -> rekor-key-v2.pub" in text
    )


def test_root_rotation_is_said_by_sync_text_json_and_diff(synced: Client, demo: DemoRepository) -> None:
    demo.rotate("root")
    result = ok(synced.run("sync", "--json")).json()
    assert result["changes"] == ["root rotated v1 -> v2"]
    diff = ok(synced.run("diff", "--json")).json()
    assert diff["changes"] == ["root rotated v1 -> v2"]
    assert diff["roles"]["root"] == {"before": 1, "after": 2}
    assert "root rotated v1 -> v2" in ok(synced.run("diff")).out
    demo.rotate("root")
    text = ok(synced.run("sync")).out
    assert text.splitlines()[1:] == ["  root rotated v2 -> v3"]  # under the sync line


def test_diff_does_not_describe_an_earlier_generation_that_fails_verification(
    synced: Client, demo: DemoRepository
) -> None:
    demo.switch_to_rekor_v2()
    ok(synced.run("sync"))
    store = Store(synced.cache)
    current = store.current()
    assert current is not None
    previous = next(p for p in store.generations_dir.iterdir() if p.name not in (".spare", current.path.name))
    target = previous / "targets" / "sigstore-services-v1.json"
    data = target.read_bytes()
    target.unlink()  # its own copy, not the hard link the current generation may share
    target.write_bytes(data.replace(b"rekor", b"rekoR", 1))
    result = ok(synced.run("diff", "--json"))
    document = result.envelope()
    assert document["result"]["previous"]["verified"] is False and document["result"]["changes"] == []
    assert "sigstore-services-v1.json: length or hash mismatch" in document["warnings"][0]
    assert "does not verify: not described" in ok(synced.run("diff")).out


def test_idle_sync_says_nothing_and_diff_without_an_earlier_generation(synced: Client) -> None:
    assert ok(synced.run("sync", "--json")).json()["changes"] == []
    diff = ok(synced.run("diff", "--json")).json()
    assert diff["previous"] is None and diff["changes"] == []
    assert "no earlier generation kept" in ok(synced.run("diff")).out


# ---- trust get ---------------------------------------------------------------------------
def test_get_prints_exactly_the_published_bytes(synced: Client, demo: DemoRepository, tmp_path: Path) -> None:
    published = demo.repo.target_data["rekor-key-v1.pub"]
    assert raw(synced, "get", "rekor-key-v1.pub").stdout == published
    assert raw(synced, "get", "rekor-key-v1").stdout == published  # the extension may be left out

    out = tmp_path / "rekor.pub"
    done = ok(synced.run("get", "rekor-key-v1.pub", "--out", str(out), "--json")).json()
    assert out.read_bytes() == published
    assert done["name"] == "rekor-key-v1.pub" and done["length"] == len(published)
    assert done["path"] == str(out) and len(done["sha256"]) == 64

    refused = synced.run("get", "rekor-key-v1.pub", "--json")
    assert refused.code == 2 and "--json needs --out" in refused.json()["message"]
    unknown = synced.run("get", "rekor-key-v3")
    assert unknown.code == 1 and unknown.out == ""
    assert unknown.err.splitlines()[0].startswith("error: Unknown target 'rekor-key-v3'")
    assert "close names: " in unknown.err and "rekor-key-v1.pub" in unknown.err.splitlines()[0]


def test_get_is_binary_safe(synced: Client, demo: DemoRepository) -> None:
    blob = bytes(range(256)) + b"\r\n\x00\xff" * 64
    demo.repo.add_target("blob.bin", blob)
    demo.repo.publish()
    synced.set_config(pinned_targets=["rekor-key-v1", "rekor-key-v2", "blob.bin"])
    ok(synced.run("sync"))
    done = raw(synced, "get", "blob.bin")
    assert done.returncode == 0 and done.stdout == blob


def test_get_refuses_a_tampered_cache(synced: Client, tmp_path: Path) -> None:
    current = Store(synced.cache).current()
    assert current is not None
    path = current.target_path("rekor-key-v1.pub")
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    done = raw(synced, "get", "rekor-key-v1.pub")
    assert done.returncode == 3 and done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert lines[0] == lines[0].strip() and lines[0].startswith(
        "error: target rekor-key-v1.pub: length or hash"
    )
    assert [line.split(":")[0] for line in lines] == ["error", "hint"]
    out = tmp_path / "never.pub"
    assert synced.run("get", "rekor-key-v1.pub", "--out", str(out)).code == 3 and not out.exists()


@needs_faketime
def test_get_refuses_stale_trust(synced: Client) -> None:
    later = Client(synced.home, synced.url, synced.root, clock="+400d")
    stale = later.run("get", "rekor-key-v1.pub")
    assert stale.code == 3 and stale.out == "" and "Trust is stale" in stale.err.splitlines()[0]


# ---- trust keys ----------------------------------------------------------------------------
def test_keys_lists_the_demo_rekor_key_with_its_algorithm(synced: Client, demo: DemoRepository) -> None:
    rows = ok(synced.run("keys", "--json")).json()["keys"]
    rekor = [row for row in rows if row["kind"] == "rekor"]
    v1 = next(row for row in rekor if row["key_id"] == spki_sha256(demo.rekor_v1))
    # named as the trusted root names it (`trust status --show-keys` does the same)
    assert v1["algorithm"] == "ecdsa-p256-sha256" and v1["status"] == "active" and v1["in_trusted_root"]
    assert v1["source"] == "rekor-key-v1.pub" and v1["url"] == "https://rekor.sigstore.example"
    v2 = next(row for row in rekor if row["key_id"] == spki_sha256(demo.rekor_v2))
    assert v2["algorithm"] == "ed25519" and v2["status"] == "held"  # pinned, not yet in use
    fulcio = next(row for row in rows if row["kind"] == "fulcio")
    assert fulcio["source"] == "fulcio-chain.pem" and len(fulcio["fingerprints"]) == 2
    text = ok(synced.run("keys")).out
    assert text.splitlines()[0].split() == [
        "KIND",
        "STATUS",
        "ALGORITHM",
        "KEY",
        "ID",
        "VALID",
        "SOURCE",
        "URL",
        "/",
        "SUBJECT",
    ]
    assert spki_sha256(demo.rekor_v1) in text and "ecdsa-p256-sha256" in text


@needs_faketime
def test_keys_on_the_public_good_instance(tmp_path: Path) -> None:
    with RepositoryServer(PUBLIC_GOOD) as server:
        home = tmp_path / "host"
        home.mkdir()
        host = Client(
            home=home, url=server.url, root=PUBLIC_GOOD / "metadata" / "5.root.json", clock=SIGN_OFF
        )
        ok(host.run("init", "--tuf-url", host.url, "--root", str(host.root)))
        rows = ok(host.run("keys", "--json")).json()["keys"]
        text = ok(host.run("keys")).out
    rekor = next(row for row in rows if row["key_id"] == REKOR_LOG_ID)
    assert rekor["kind"] == "rekor" and rekor["url"] == "https://rekor.sigstore.dev"
    assert rekor["algorithm"] == "ecdsa-p256-sha256" and rekor["status"] == "active"
    assert rekor["source"] == "trusted_root.json"
    assert {row["kind"] for row in rows} >= {"rekor", "ctlog", "fulcio", "tsa"}
    assert "retired" in {row["status"] for row in rows}  # kept and labelled, not hidden
    assert REKOR_LOG_ID in text
