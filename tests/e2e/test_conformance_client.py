"""`trust-tuf-client` follows the tuf-conformance client protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, clean_env


def tuf_client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from stella_trust.conformance.tuf_client import main; main()", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )


def test_init_refresh_download(tmp_path: Path, demo: DemoRepository, server: FaultyServer) -> None:
    meta, targets = tmp_path / "meta", tmp_path / "targets"
    meta.mkdir()
    assert tuf_client("--metadata-dir", str(meta), "init", str(demo.root_path)).returncode == 0
    assert server.take_requests() == []  # init uses no network
    assert json.loads((meta / "root.json").read_bytes())["signed"]["version"] == 1

    url = f"{server.url}/metadata"
    done = tuf_client("--metadata-dir", str(meta), "--metadata-url", url, "refresh")
    assert done.returncode == 0, done.stderr
    assert server.take_requests() == [
        "/metadata/2.root.json",
        "/metadata/timestamp.json",
        "/metadata/2.snapshot.json",
        "/metadata/2.targets.json",
    ]
    assert {p.name for p in meta.glob("*.json")} == {
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
    }

    download = [
        "--metadata-dir",
        str(meta),
        "--metadata-url",
        url,
        "--target-name",
        "rekor-key-v1.pub",
        "--target-name",
        "fulcio-chain.pem",
        "--target-base-url",
        f"{server.url}/targets/",
        "--target-dir",
        str(targets),
        "download",
    ]
    done = tuf_client(*download)
    assert done.returncode == 0, done.stderr
    assert (targets / "rekor-key-v1.pub").read_bytes() == demo.rekor_v1
    fetched = [p for p in server.take_requests() if p.startswith("/targets/")]
    assert [p.rsplit(".", 2)[-2:] for p in fetched] == [["rekor-key-v1", "pub"], ["fulcio-chain", "pem"]]

    assert tuf_client(*download).returncode == 0
    assert [p for p in server.take_requests() if p.startswith("/targets/")] == []  # already there


def test_failures_exit_1(tmp_path: Path, demo: DemoRepository, server: FaultyServer) -> None:
    meta = tmp_path / "meta"
    meta.mkdir()
    bad_root = tuf_client("--metadata-dir", str(meta), "init", str(demo.repo.metadata_dir / "timestamp.json"))
    assert bad_root.returncode == 1 and "root" in bad_root.stderr
    tuf_client("--metadata-dir", str(meta), "init", str(demo.root_path))
    unknown = tuf_client(
        "--metadata-dir",
        str(meta),
        "--metadata-url",
        f"{server.url}/metadata",
        "--target-name",
        "nope",
        "--target-base-url",
        f"{server.url}/targets/",
        "--target-dir",
        str(tmp_path / "t"),
        "download",
    )
    assert unknown.returncode == 1 and "nope" in unknown.stderr
    server.inject("/metadata/timestamp.json", "status", 500)
    refresh = tuf_client("--metadata-dir", str(meta), "--metadata-url", f"{server.url}/metadata", "refresh")
    assert refresh.returncode == 1
