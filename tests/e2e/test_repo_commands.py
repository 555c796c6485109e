"""`trust repo`: ceremonies across two "machines", thresholds, passphrases, nginx."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from stella_trust.repository.serve import RepositoryServer
from tests.conftest import clean_env, libfaketime, ok
from tests.e2e.conftest import Client
from tests.e2e.operators import (
    PASSPHRASES,
    no_secret_leaked,
    operator_env,
    publish_demo_content,
    repo,
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "machine-a"
    no_secret_leaked(ok(repo(path, "init", "--root-keys", "3", "--root-threshold", "2")))
    (tmp_path / "key.pub").write_text("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA0Q==\n")
    ok(repo(path, "add-target", str(tmp_path / "key.pub"), "--name", "rekor-key-v1.pub"))
    ok(repo(path, "publish"))
    return path


def test_init_layout_and_key_files(workspace: Path) -> None:
    keys = sorted(p.name for p in (workspace / "keys").glob("*.pem"))
    assert keys == ["root.pem", "root2.pem", "root3.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    for key in (workspace / "keys").glob("*.pem"):
        assert key.stat().st_mode & 0o777 == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    metadata = workspace / "repository" / "metadata"
    assert (metadata / "1.root.json").is_file() and (metadata / "timestamp.json").is_file()
    root = json.loads((metadata / "1.root.json").read_text())["signed"]
    assert root["consistent_snapshot"] is True and root["roles"]["root"]["threshold"] == 2
    assert len(root["roles"]["root"]["keyids"]) == 3
    published = list((workspace / "repository" / "targets").iterdir())
    assert len(published) == 1 and published[0].name.endswith(".rekor-key-v1.pub")


@pytest.mark.slow
def test_full_ceremony_across_two_machines(tmp_path: Path, workspace: Path) -> None:
    publish_demo_content(workspace, tmp_path)
    machine_b = tmp_path / "machine-b"
    (machine_b / "keys").mkdir(parents=True)
    for name in ("root2", "root3"):  # these key holders live elsewhere
        shutil.move(str(workspace / "keys" / f"{name}.pem"), machine_b / "keys" / f"{name}.pem")
    shutil.copy(workspace / "keys" / "index.json", machine_b / "keys" / "index.json")
    shutil.copytree(workspace / "repository", machine_b / "repository")
    shutil.copy(workspace / "repo.json", machine_b / "repo.json")

    with RepositoryServer(workspace / "repository") as server:
        client = Client(
            home=tmp_path / "c", url=server.url, root=workspace / "repository" / "metadata" / "1.root.json"
        )
        client.home.mkdir()
        ok(client.run("init", "--tuf-url", client.url, "--root", str(client.root), "--pin", "rekor-key-v1"))

        # machine A: a staged root change, signed with the one root key it holds
        ok(repo(workspace, "root", "set-threshold", "targets", "1"))
        signed_a = ok(repo(workspace, "sign", "root", "--key", str(workspace / "keys" / "root.pem")))
        assert "old root v1 threshold 1/2 NOT met" in signed_a.out
        refused = repo(workspace, "commit")
        assert refused.code == 1 and "commit refused" in refused.err and "1/2" in refused.err

        # carry staged/root.json to machine B, add a second signature there, carry it back
        (machine_b / "staged").mkdir()
        shutil.copy(workspace / "staged" / "root.json", machine_b / "staged" / "root.json")
        signed_b = ok(repo(machine_b, "sign", "root", "--key", str(machine_b / "keys" / "root2.pem")))
        assert "old root v1 threshold 2/2 met" in signed_b.out
        assert "new root v2 threshold 2/2 met" in signed_b.out
        shutil.copy(machine_b / "staged" / "root.json", workspace / "staged" / "root.json")
        status = ok(repo(workspace, "status", "--json")).json()
        assert status["staged"]["root"]["old_threshold"] == {"have": 2, "need": 2}
        assert status["staged"]["root"]["new_threshold"] == {"have": 2, "need": 2}
        ok(repo(workspace, "commit"))
        assert (workspace / "repository" / "metadata" / "2.root.json").is_file()

        ok(client.run("sync"))
        assert ok(client.status()).json()["metadata"]["root"]["version"] == 2


def test_root_rotation_to_new_keys_walked_by_client(tmp_path: Path, workspace: Path) -> None:
    publish_demo_content(workspace, tmp_path)
    old_root_keys = {
        json.loads((workspace / "keys" / "index.json").read_text())[n]["keyid"]
        for n in ("root", "root2", "root3")
    }
    with RepositoryServer(workspace / "repository") as server:
        client = Client(
            home=tmp_path / "c", url=server.url, root=workspace / "repository" / "metadata" / "1.root.json"
        )
        client.home.mkdir()
        ok(client.run("init", "--tuf-url", client.url, "--root", str(client.root), "--pin", "rekor-key-v1"))
        rotated = ok(repo(workspace, "rotate", "root"))
        assert "rotated root: 3 new key(s); committed root v2" in rotated.out
        index = json.loads((workspace / "keys" / "index.json").read_text())
        new_keys = {index[n]["keyid"] for n in ("root", "root2", "root3")}
        assert not new_keys & old_root_keys
        assert len(list((workspace / "keys" / "retired").glob("*.pem"))) == 3
        root_v2 = json.loads((workspace / "repository" / "metadata" / "2.root.json").read_text())
        assert set(root_v2["signed"]["roles"]["root"]["keyids"]) == new_keys
        assert old_root_keys & set(
            root_v2["signatures"][i]["keyid"] for i in range(len(root_v2["signatures"]))
        )
        ok(client.run("sync"))
        assert ok(client.status()).json()["metadata"]["root"]["version"] == 2
        ok(repo(workspace, "rotate", "timestamp"))
        ok(client.run("sync"))
        status = ok(client.status()).json()
        assert status["metadata"]["root"]["version"] == 3


def test_timestamp_resign_with_only_the_timestamp_key(tmp_path: Path, workspace: Path) -> None:
    online = tmp_path / "online"
    (online / "keys").mkdir(parents=True)
    shutil.copytree(workspace / "repository", online / "repository")
    shutil.copy(workspace / "repo.json", online / "repo.json")
    ok(repo(workspace, "export-keys", str(online), "--roles", "timestamp"))
    assert sorted(p.name for p in (online / "keys").glob("*.pem")) == ["timestamp.pem"]
    env = clean_env(STELLA_TIMESTAMP_PASSPHRASE=PASSPHRASES["TIMESTAMP"])
    result = ok(repo(online, "timestamp", "--expires", "2d", env=env))
    assert "timestamp v3" in result.out
    timestamp = json.loads((online / "repository" / "metadata" / "timestamp.json").read_text())
    assert timestamp["signed"]["version"] == 3
    (tmp_path / "n.txt").write_text("n")
    ok(repo(online, "add-target", str(tmp_path / "n.txt"), env=env))
    refused = repo(online, "publish", env=env)  # no targets or snapshot key here
    assert refused.code == 1 and "targets v3: 0 of 1 signatures; staged, not published" in refused.out
    assert (
        json.loads((online / "repository" / "metadata" / "timestamp.json").read_text())["signed"]["version"]
        == 3
    )


def test_targets_threshold_two_refused_with_one_signature(tmp_path: Path) -> None:
    path = tmp_path / "prod"
    ok(repo(path, "init", "--targets-keys", "2", "--targets-threshold", "2"))
    releaser = tmp_path / "releaser"
    releaser.mkdir()
    shutil.move(str(path / "keys" / "targets2.pem"), releaser / "targets2.pem")
    (tmp_path / "a.txt").write_text("a")
    ok(repo(path, "add-target", str(tmp_path / "a.txt")))
    partial = repo(path, "publish")
    assert partial.code == 1 and "1 of 2 signatures; staged, not published" in partial.out
    published = path / "repository" / "targets"
    assert not published.exists() or not any(published.iterdir())
    ok(repo(path, "sign", "targets", "--key", str(releaser / "targets2.pem")))
    ok(repo(path, "publish"))
    targets = json.loads((path / "repository" / "metadata" / "targets.json").read_text())
    assert "a.txt" in targets["signed"]["targets"] and len(targets["signatures"]) == 2


def test_wrong_and_empty_passphrases_refused_without_leaking(tmp_path: Path, workspace: Path) -> None:
    wrong = operator_env(STELLA_TIMESTAMP_PASSPHRASE="not the timestamp secret")
    result = repo(workspace, "timestamp", env=wrong)
    assert result.code == 1 and "wrong passphrase for key" in result.err
    assert "not the timestamp secret" not in result.err + result.out
    no_secret_leaked(result)
    empty = repo(tmp_path / "fresh", "init", env=operator_env(STELLA_ROOT2_PASSPHRASE=""))
    assert empty.code == 2 and "empty passphrase for key 'root2' refused" in empty.err
    assert not (tmp_path / "fresh" / "repo.json").exists()
    missing = repo(tmp_path / "fresh2", "init", env=clean_env())
    assert missing.code == 2 and "STELLA_ROOT_PASSPHRASE" in missing.err


def test_check_judges_each_role_by_its_rhythm(workspace: Path) -> None:
    healthy = ok(repo(workspace, "check", "--within", "60d"))
    assert healthy.out.startswith("all roles within their rhythm")
    report = ok(repo(workspace, "check", "--within", "60d", "--json")).json()
    assert [r["state"] for r in report["roles"]] == ["ok"] * 4
    assert {"role", "version", "expires", "state", "summary"} <= set(report["roles"][0])
    near = repo(workspace, "check", "--within", "400d")
    assert near.code == 1 and "EXPIRING root v1 expires in 364 days" in near.out
    assert "a root ceremony" in near.out and "ok       timestamp v2" in near.out


def test_roots_prints_the_pin(workspace: Path) -> None:
    import hashlib

    digest = hashlib.sha256((workspace / "repository" / "metadata" / "1.root.json").read_bytes()).hexdigest()
    assert f"trust init --root-sha256 {digest}" in ok(repo(workspace, "roots")).out


def test_export_keys_never_exports_root(tmp_path: Path, workspace: Path) -> None:
    result = repo(workspace, "export-keys", str(tmp_path / "out"), "--roles", "targets,root")
    assert result.code == 2 and "root keys are never exported" in result.err
    ok(repo(workspace, "export-keys", str(tmp_path / "out"), "--roles", "targets"))
    assert sorted(p.name for p in (tmp_path / "out" / "keys").iterdir()) == ["targets.pem"]


def test_low_lifetime_warning_at_publish(tmp_path: Path) -> None:
    path = tmp_path / "short"
    ok(repo(path, "init", "--expires", "root=2d,timestamp=1d"))
    (tmp_path / "b.txt").write_text("b")
    ok(repo(path, "add-target", str(tmp_path / "b.txt")))
    later = operator_env(LD_PRELOAD=libfaketime(), FAKETIME="+40h", DONT_FAKE_MONOTONIC="1")
    result = ok(repo(path, "publish", env=later))  # root signed for 2 days, 8 hours left
    assert "warning: root v1 expires in 7 hours" in result.err and "(of a 2 days lifetime)" in result.err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nginx_served_repository_synced_by_client(tmp_path: Path, workspace: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        # A developer machine may lack it; CI installs it, so there a missing nginx fails.
        assert os.environ.get("CI") != "true", "CI must install nginx (apt-get install nginx-light)"
        pytest.skip("nginx not installed: apt-get install nginx-light")
    publish_demo_content(workspace, tmp_path)
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    conf.write_text(f"""
daemon off;
user {getpass.getuser()};
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {run_dir}/access.log;
  client_body_temp_path {run_dir}/body;
  proxy_temp_path {run_dir}/proxy;
  fastcgi_temp_path {run_dir}/fastcgi;
  uwsgi_temp_path {run_dir}/uwsgi;
  scgi_temp_path {run_dir}/scgi;
  types {{ application/json json; }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {workspace / "repository"};
    location / {{ try_files $uri =404; }}
  }}
}}
""")
    server = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)  # polling interval: the condition is nginx accepting connections
        client = Client(
            home=tmp_path / "nginx-client",
            url=f"http://127.0.0.1:{port}",
            root=workspace / "repository" / "metadata" / "1.root.json",
        )
        client.home.mkdir()
        ok(client.run("init", "--tuf-url", client.url, "--root", str(client.root), "--pin", "rekor-key-v1"))
        status = ok(client.status()).json()
        assert status["freshness"]["state"] == "fresh"
        assert "rekor-key-v1.pub" in {t["name"] for t in status["targets"]}
        ok(repo(workspace, "timestamp"))
        ok(client.run("sync"))
        assert ok(client.status()).json()["metadata"]["timestamp"]["version"] == 4
        log = (run_dir / "access.log").read_text()
        assert "GET /metadata/timestamp.json" in log
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_remove_target_and_key_edits(tmp_path: Path, workspace: Path) -> None:
    ok(repo(workspace, "remove-target", "rekor-key-v1.pub"))
    ok(repo(workspace, "publish"))
    targets = json.loads((workspace / "repository" / "metadata" / "targets.json").read_text())
    assert targets["signed"]["targets"] == {}
    unknown = repo(workspace, "remove-target", "nope")
    assert unknown.code == 2 and "Unknown target 'nope'" in unknown.err

    env = operator_env(STELLA_TARGETS2_PASSPHRASE="second targets key")
    added = ok(repo(workspace, "root", "add-key", "--role", "targets", env=env))
    assert "added key targets2 for targets" in added.out
    assert (workspace / "keys" / "targets2.pem").stat().st_mode & 0o777 == 0o600
    ok(repo(workspace, "root", "set-threshold", "targets", "2"))
    too_few = repo(workspace, "root", "revoke-key", "targets2", "--role", "targets")
    assert too_few.code == 2 and "below its threshold" in too_few.err
    for key in ("root", "root2"):
        ok(repo(workspace, "sign", "root", "--key", str(workspace / "keys" / f"{key}.pem")))
    committed = ok(repo(workspace, "commit", env=env))  # targets re-signed by both keys with it
    assert "re-signed targets v4" in committed.out
    root = json.loads((workspace / "repository" / "metadata" / "2.root.json").read_text())["signed"]
    assert root["roles"]["targets"]["threshold"] == 2 and len(root["roles"]["targets"]["keyids"]) == 2
    (tmp_path / "c.txt").write_text("c")
    ok(repo(workspace, "add-target", str(tmp_path / "c.txt")))
    ok(repo(workspace, "publish", env=env))  # both targets keys at hand: threshold 2 met
    targets = json.loads((workspace / "repository" / "metadata" / "targets.json").read_text())
    assert "c.txt" in targets["signed"]["targets"] and len(targets["signatures"]) == 2


def test_rotation_below_the_root_threshold_stages_for_the_other_holders(workspace: Path) -> None:
    before_meta = sorted(p.name for p in (workspace / "repository" / "metadata").iterdir())
    drive2 = workspace.parent / "root-drive-2"
    drive2.mkdir()
    shutil.move(str(workspace / "keys" / "root2.pem"), drive2 / "root2.pem")
    (workspace / "keys" / "root3.pem").unlink()
    staged = repo(workspace, "rotate", "timestamp")
    assert staged.code == 1 and "staged root v2 with 1 new timestamp key(s)" in staged.out
    assert "old root v1 threshold 1/2 NOT met" in staged.out
    assert sorted(p.name for p in (workspace / "repository" / "metadata").iterdir()) == before_meta
    assert (workspace / "keys" / "timestamp.next.pem").is_file()
    again = repo(workspace, "rotate", "targets")  # never discards the ceremony in progress
    assert again.code == 2 and "a root ceremony is in progress (staged root v2)" in again.err
    ok(repo(workspace, "sign", "root", "--key", str(drive2 / "root2.pem")))
    committed = ok(repo(workspace, "commit"))
    assert "committed root v2" in committed.out and "timestamp v3" in committed.out
    assert (workspace / "keys" / "timestamp.pem").is_file() and not (
        workspace / "keys" / "timestamp.next.pem"
    ).exists()
    assert len(list((workspace / "keys" / "retired").glob("timestamp-*.pem"))) == 1


def test_rotation_without_the_snapshot_key_is_staged_as_one_set(workspace: Path) -> None:
    (workspace / "keys" / "snapshot.pem").unlink()
    staged = repo(workspace, "rotate", "targets")  # new targets -> new snapshot, key not here
    assert staged.code == 1 and "staged root v2 with targets v3 as one change" in staged.err
    assert "nothing was published" in staged.err and "Still needed: snapshot: snapshot key(s)" in staged.err
    assert "made as keys/snapshot.pem and moved since" in staged.err  # where the key is held
    assert not (workspace / "repository" / "metadata" / "2.root.json").exists()
    assert (workspace / "staged" / "root.json").is_file()  # the ceremony is kept, not discarded
    assert not (workspace / "keys" / "retired").exists()


def test_change_passphrase_keeps_the_key_and_drops_the_old_secret(workspace: Path) -> None:
    key = workspace / "keys" / "timestamp.pem"
    public_before = key.read_bytes().split(b"-----BEGIN ENCRYPTED")[0]
    env = operator_env(STELLA_TIMESTAMP_NEW_PASSPHRASE="timestamp secret 2027")
    changed = ok(repo(workspace, "change-passphrase", str(key), env=env))
    assert "STELLA_TIMESTAMP_PASSPHRASE" in changed.out and "2027" not in changed.out + changed.err
    assert key.read_bytes().startswith(public_before) and key.stat().st_mode & 0o777 == 0o600
    old = repo(workspace, "timestamp")  # the old passphrase no longer opens it
    assert old.code == 1 and "wrong passphrase for key" in old.err
    ok(repo(workspace, "timestamp", env=operator_env(STELLA_TIMESTAMP_PASSPHRASE="timestamp secret 2027")))
