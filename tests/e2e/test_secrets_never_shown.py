"""Credentials in a mirror URL never leave the config (issue 21; decision 18).

A host is configured with `http://user:<marker>@127.0.0.1:PORT/?token=<marker>`; every command's
output (text and JSON), every error, the agent's log, `state.json`, the metrics file, every
cached file and a bundle's every byte (decompressed) are searched for the marker.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.conftest import FaultyServer, Result
from tests.e2e.conftest import Client

MARKER = "pw-M4RK3R-5f3a"


def secret_url(server: FaultyServer) -> str:
    host = server.url.removeprefix("http://")
    return f"http://mirror-user:{MARKER}@{host}"


def clean(result: Result) -> Result:
    assert MARKER not in result.out and MARKER not in result.err, (result.out, result.err)
    return result


@pytest.mark.slow
def test_a_password_in_the_mirror_url_is_never_shown_written_or_carried(
    tmp_path: Path, client: Client, server: FaultyServer
) -> None:
    url = secret_url(server)
    metrics = tmp_path / "metrics.prom"
    host = Client(home=client.home, url=url, root=client.root)
    assert clean(host.init()).code == 0
    host.set_config(metrics_path=str(metrics))
    for args in (
        ["sync"],
        ["sync", "--json"],
        ["sync", "--force", "--json"],
        ["status"],
        ["status", "--json", "--show-endpoints"],
        ["config", "show"],
        ["config", "show", "--json"],
        ["doctor"],
        ["doctor", "--json"],
        ["keys", "--json"],
        ["diff", "--json"],
        ["agent", "--once", "--log-format", "json"],
        ["agent", "--once", "--json"],
        ["export", "--format", "trusted-root", "--out", str(tmp_path / "trusted_root.json")],
        ["snapshot", "export", "--out", str(tmp_path / "trust.tar.zst"), "--json"],
    ):
        clean(host.run(*args))
    server.inject("timestamp.json", "status", 503)  # errors name the URL they failed on
    failed = clean(host.run("sync", "--json"))
    assert failed.code == 1 and "mirror-user" not in failed.out and "***@" in failed.out
    clean(host.run("agent", "--once"))
    server.heal()

    written = [p for p in (host.cache.rglob("*")) if p.is_file() and not p.is_symlink()]
    written += [metrics, tmp_path / "trusted_root.json"]
    assert any(p.name == "state.json" for p in written) and metrics.is_file()
    for path in written:
        assert MARKER.encode() not in path.read_bytes(), path
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((tmp_path / "trust.tar.zst").read_bytes()))
    with tarfile.open(fileobj=raw, mode="r|") as archive:
        for member in archive:
            extracted = archive.extractfile(member)
            if extracted is not None:
                assert MARKER.encode() not in extracted.read(), member.name
    assert MARKER in host.config.read_text()  # the one place it lives
