"""A site relay on nginx (README "Mirrors and a site relay"), run as the README prints it.

The README's nginx block is taken verbatim; only the origin, the listen address, the cache
directory and the one-minute validities (shortened to one second, so an expired entry need not
be waited for a minute) are substituted. Hosts sync through it with the real CLI, keep syncing
and verifying while the origin is stopped (nginx serves its stale cache), a host joins while
the origin is down, and an air-gapped site serves an imported host's `trust export --out DIR`
the same way.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client

README = Path(__file__).resolve().parents[2] / "README.md"
README_ORIGIN = "https://tuf-repo-cdn.sigstore.dev"


def readme_relay_config() -> str:
    """The ```nginx block of the README's site relay section."""
    text = README.read_text()
    section = text[text.index("### Mirrors and a site relay") :]
    start = section.index("```nginx\n") + len("```nginx\n")
    return section[start : section.index("```", start)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling interval: the condition decides


@contextmanager
def relay(tmp_path: Path, origin: str, name: str) -> Iterator[str]:
    """nginx running the README's relay configuration in front of `origin`; yields its URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        assert os.environ.get("CI") != "true", "CI must install nginx (apt-get install nginx-light)"
        pytest.skip("nginx not installed: apt-get install nginx-light")
    port = _free_port()
    run_dir = tmp_path / name
    run_dir.mkdir()
    site = (
        readme_relay_config()
        .replace(README_ORIGIN, origin)
        .replace("listen 8080;", f"listen 127.0.0.1:{port};")
        .replace("/var/cache/nginx/tuf", str(run_dir / "cache"))
        .replace(" 1m;", " 1s;")
    )
    assert site.count(origin) == 5 and " 1m;" not in site
    conf = run_dir / "nginx.conf"
    conf.write_text(f"""
daemon off;
user {getpass.getuser()};
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log;
events {{ worker_connections 64; }}
http {{
  log_format relay '$request_uri $status $upstream_cache_status';
  access_log {run_dir}/access.log relay;
  client_body_temp_path {run_dir}/body;
  proxy_temp_path {run_dir}/proxy;
  fastcgi_temp_path {run_dir}/fastcgi;
  uwsgi_temp_path {run_dir}/uwsgi;
  scgi_temp_path {run_dir}/scgi;
  default_type application/octet-stream;
{site}
}}
""")
    server = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def listening() -> bool:
            assert server.poll() is None, server.stderr.read() if server.stderr else "nginx exited"
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, "nginx to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def get(url: str) -> tuple[int, str, bytes]:
    """(status, X-Cache-Status, body) of one GET, without any proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers.get("X-Cache-Status", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Cache-Status", ""), b""


def host(tmp_path: Path, name: str, origin: str, root: Path) -> Client:
    home = tmp_path / name
    home.mkdir()
    return Client(home=home, url=origin, root=root)


def synced_through(client: Client, relay_url: str, origin: str) -> dict[str, object]:
    """A sync that went through the relay alone: the origin was not asked."""
    result = ok(client.run("sync", "--json")).json()
    assert [(m["url"], m["error"]) for m in result["mirrors"]] == [(relay_url, None), (origin, None)]
    assert result["mirrors"][1]["requests"] == 0
    return dict(result)


def test_hosts_sync_through_the_relay_and_keep_syncing_when_the_origin_is_down(
    tmp_path: Path, server: FaultyServer, demo: DemoRepository
) -> None:
    with relay(tmp_path, server.url, "relay") as relay_url:
        hosts = [host(tmp_path, f"host{i}", server.url, demo.root_path) for i in (1, 2)]
        ok(hosts[0].init("--mirror", relay_url))
        first = server.take_requests()
        assert any(path.startswith("/targets/") for path in first)  # nginx fetched them once
        ok(hosts[1].init("--mirror", relay_url))
        assert not any(path.startswith("/targets/") for path in server.take_requests())  # cached

        # a publication reaches the hosts through the relay once its minute (here: second) is up
        demo.repo.publish()
        published = (demo.repo.metadata_dir / "timestamp.json").read_bytes()
        wait_for(lambda: get(relay_url + "/metadata/timestamp.json")[2] == published, "the relay to refresh")
        for client in hosts:
            result = synced_through(client, relay_url, server.url)
            assert result["changed"] and result["versions"] == {
                "root": 1,
                "timestamp": demo.repo.timestamp.signed.version,
                "snapshot": demo.repo.snapshot.signed.version,
                "targets": demo.repo.targets.signed.version,
            }

        # the origin goes down: nginx serves what it holds, stale, and the hosts keep syncing
        server.stop()
        wait_for(lambda: get(relay_url + "/metadata/timestamp.json")[1] == "STALE", "stale timestamp")
        wait_for(lambda: get(relay_url + "/metadata/2.root.json")[:2] == (404, "STALE"), "stale 404")
        for _ in range(3):
            for client in hosts:
                result = synced_through(client, relay_url, server.url)
                assert not result["changed"]
        # a host that joins now: everything it needs is in the relay's cache
        late = host(tmp_path, "late", server.url, demo.root_path)
        ok(late.init("--mirror", relay_url))
        for client in [*hosts, late]:
            status = ok(client.status()).json()  # re-verified from the anchor
            assert status["freshness"]["state"] == "fresh"
            assert status["metadata"]["timestamp"]["version"] == demo.repo.timestamp.signed.version
            assert {"rekor-key-v1.pub", "rekor-key-v2.pub"} <= {t["name"] for t in status["targets"]}
            assert [(m["healthy"], m["last_error"]) for m in status["mirrors"]] == [
                (True, None),
                (None, None),
            ]
            key = ok(client.run("get", "rekor-key-v1")).out
            assert key.encode() == demo.rekor_v1
        log = (tmp_path / "relay" / "access.log").read_text()
        assert "/metadata/timestamp.json 200 STALE" in log


def test_an_air_gapped_site_serves_an_imported_export_through_the_relay(
    tmp_path: Path, server: FaultyServer, demo: DemoRepository
) -> None:
    connected = host(tmp_path, "connected", server.url, demo.root_path)
    ok(connected.init())
    bundle = tmp_path / "trust.tar.zst"
    ok(connected.run("snapshot", "export", "--out", str(bundle)))
    # across the air gap: one host imports the bundle and writes the directory the site serves
    importer = host(tmp_path, "importer", "", demo.root_path)
    ok(importer.run("init", "--root", str(demo.root_path), "--offline", "--pin", "rekor-key-v1,rekor-key-v2"))
    ok(importer.run("import", str(bundle)))
    exported = tmp_path / "site-export"
    ok(importer.run("export", "--out", str(exported)))
    held = ok(importer.status()).json()["metadata"]
    served = FaultyServer(exported).start()
    try:
        with relay(tmp_path, served.url, "site-relay") as relay_url:
            site = [host(tmp_path, f"site{i}", served.url, demo.root_path) for i in (1, 2)]
            ok(site[0].init("--mirror", relay_url))
            assert ok(site[0].status()).json()["metadata"] == held
            served.stop()  # the export server goes away; the relay's cache carries the site
            wait_for(lambda: get(relay_url + "/metadata/timestamp.json")[1] == "STALE", "stale timestamp")
            result = synced_through(site[0], relay_url, served.url)
            assert not result["changed"]
            ok(site[1].init("--mirror", relay_url))
            for client in site:
                status = ok(client.status()).json()
                assert status["metadata"] == held and status["freshness"]["state"] == "fresh"
                assert ok(client.run("get", "rekor-key-v1")).out.encode() == demo.rekor_v1
    finally:
        served.stop()


PUBLIC_GOOD = (
    Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "public-good-2025-10"
)
SIGN_OFF = "2025-10-20 12:00:00"  # inside the fixture's timestamp (its README)


def test_public_good_through_a_tampering_mirror_and_the_relay_under_faketime(tmp_path: Path) -> None:
    """The real public-good repository (real signatures, 9 roots walked from v5, a delegated
    role) behind the README's relay, with a first mirror serving a tampered timestamp: refused,
    the relay serves, and the hosts keep syncing from its stale cache once the origin is gone."""
    origin = FaultyServer(PUBLIC_GOOD).start()
    tampering = FaultyServer(PUBLIC_GOOD).start()
    try:
        document = json.loads((PUBLIC_GOOD / "metadata" / "timestamp.json").read_bytes())
        document["signed"]["meta"]["snapshot.json"]["version"] += 1  # signatures kept: refused
        tampered = json.dumps(document).encode()
        tampering.inject("/metadata/timestamp.json", "body", tampered)
        with relay(tmp_path, origin.url, "relay") as relay_url:
            home = tmp_path / "pg-host"
            home.mkdir()
            client = Client(home=home, url=origin.url, root=PUBLIC_GOOD / "metadata" / "5.root.json")
            client.clock = SIGN_OFF
            args = ["--tuf-url", origin.url, "--root", str(client.root)]
            init = ok(
                client.run("init", *args, "--mirror", tampering.url, "--mirror", relay_url, "--json")
            ).json()
            mirrors = init["sync"]["mirrors"]
            assert [m["url"] for m in mirrors] == [tampering.url, relay_url, origin.url]
            assert "Signature verification failed" in mirrors[0]["error"]
            assert mirrors[1]["error"] is None and mirrors[2]["requests"] == 0
            assert tampered not in {p.read_bytes() for p in client.cache.rglob("*") if p.is_file()}
            origin.stop()
            wait_for(lambda: get(relay_url + "/metadata/timestamp.json")[1] == "STALE", "stale timestamp")
            for _ in range(3):
                again = ok(client.run("sync", "--json")).json()
                assert not again["changed"] and again["versions"]["root"] == 13
            status = ok(client.status()).json()
            assert (
                status["metadata"]["timestamp"]["version"] == 492 and status["freshness"]["state"] == "fresh"
            )
            assert [m["healthy"] for m in status["mirrors"]] == [False, True, None]
            trusted_root = tmp_path / "trusted_root.json"
            ok(client.run("export", "--format", "trusted-root", "--out", str(trusted_root)))
            assert json.loads(trusted_root.read_text())["tlogs"]
    finally:
        tampering.stop()
        origin.stop()
