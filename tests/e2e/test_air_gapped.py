"""Air-gapped hosts (README "Air-gapped hosts"): initialised with a root and no URL, they
take trust only from bundles carried across, and never touch the network."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client


def test_bundle_only_host_from_init_to_verified_status(
    tmp_path: Path, synced: Client, server: FaultyServer
) -> None:
    bundle = tmp_path / "usb" / "trust.tar.zst"
    bundle.parent.mkdir()
    ok(synced.run("snapshot", "export", "--out", str(bundle)))
    before = len(server.requests)

    gapped = Client(home=tmp_path / "gapped", url="", root=synced.root)
    gapped.home.mkdir()
    init = ok(gapped.run("init", "--root", str(synced.root), "--offline", "--json"))
    assert init.json()["sync"] is None and init.json()["root_version"] == 1
    refused = gapped.run("sync")
    assert refused.code != 0 and refused.err.startswith("error: ")
    assert gapped.run("status").code == 3  # no trust yet: exit 3, one line
    imported = ok(gapped.run("import", str(bundle), "--verify-manifest", "--json")).json()
    assert imported["changed"] is True and imported["changes"][0].startswith("trust established: root v1")
    status = ok(gapped.status()).json()
    assert status["freshness"]["state"] == "fresh" and status["offline_mode"] is True
    assert status["tuf_url"] is None
    ok(gapped.run("agent", "--once"))
    assert len(server.requests) == before  # the air-gapped host never asked the repository anything


def test_init_without_url_needs_a_root_file(tmp_path: Path, synced: Client) -> None:
    host = Client(home=tmp_path / "h", url="", root=synced.root)
    host.home.mkdir()
    result = host.run("init", "--offline")
    assert result.code == 2 and "--tuf-url is required, except on a bundle-only host" in result.err
    assert not (host.cache / "anchor.root.json").exists()


def test_offline_init_with_an_http_url_stores_the_anchor_and_skips_the_sync(
    tmp_path: Path, synced: Client
) -> None:
    host = Client(home=tmp_path / "h", url=synced.url, root=synced.root)
    host.home.mkdir()
    result = ok(host.run("init", "--tuf-url", synced.url, "--root", str(synced.root), "--offline"))
    assert "offline: no first sync" in result.out and "trust sync" in result.out
