"""No traceback, ever: inputs that used to crash now end in one line and a hint."""

from __future__ import annotations

import json
from pathlib import Path

from stella_trust._internal.store import Store
from tests.conftest import clean_env, ok, refused
from tests.e2e.conftest import Client
from tests.e2e.operators import repo
from tests.e2e.test_repo_commands import workspace  # noqa: F401  (fixture)


def test_missing_service_map_file_from_the_environment(synced: Client, tmp_path: Path) -> None:
    env = clean_env(STELLA_SIGSTORE_SERVICE_MAP=str(tmp_path / "absent.json"))
    refused(synced.run("sync", env=env), 1, "Service map not found")
    refused(synced.run("status", env=env), 3, "Service map not found")


def test_durations_that_would_overflow(synced: Client, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar.zst"
    ok(synced.run("snapshot", "export", "--out", str(bundle)))
    refused(synced.run("import", str(bundle), "--reject-if-stale", "inf"), 2, "not a finite duration")
    refused(synced.run("import", str(bundle), "--reject-if-stale", "1e12d"), 2, "longer than 100 years")


def test_operator_inputs_that_would_overflow_or_are_corrupt(workspace: Path, tmp_path: Path) -> None:  # noqa: F811
    refused(repo(workspace, "check", "--within", "1e12d"), 2, "longer than 100 years")
    refused(repo(tmp_path / "other", "init", "--expires", "timestamp=inf"), 2, "--expires")
    (workspace / "keys" / "index.json").write_text("{not json")  # only a cache: keys carry their public key
    assert "keys here: targets" in ok(repo(workspace, "status")).out
    (workspace / "repository" / "metadata" / "snapshot.json").write_text("{not json")
    refused(repo(workspace, "status"), 1, "cannot load")
    (workspace / "repo.json").write_text(json.dumps({"expires": "soon"}))
    refused(repo(workspace, "status"), 1, "repo.json is corrupt")


def test_rollback_floor_of_the_wrong_type(synced: Client) -> None:
    store = Store(synced.cache)
    state = json.loads(store.state_path.read_text())
    state["floor"]["timestamp"] = {"version": "many"}
    store.state_path.write_text(json.dumps(state))
    refused(synced.run("status"), 3, "rollback floor")
    state["floor"]["timestamp"] = {"version": 1}  # no keyids: refused, never silently skipped
    store.state_path.write_text(json.dumps(state))
    refused(synced.run("status"), 3, "rollback floor")


def test_missing_config_and_section_typo(synced: Client, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"  # its trust.yaml does not exist
    elsewhere.mkdir()
    refused(Client(home=elsewhere, url=synced.url, root=synced.root).run("status"), 3, "does not exist")
    synced.config.write_text(synced.config.read_text().replace("trust_repo:", "trust_rep:"))
    refused(synced.run("status"), 1, "did you mean 'attestor.trust_repo'")


def test_unwritable_outputs_are_one_line(synced: Client, tmp_path: Path) -> None:
    refused(synced.run("export", "--format", "trusted-root", "--out", str(tmp_path)), 1, "directory")
    refused(synced.run("snapshot", "export", "--out", str(tmp_path)), 1, "directory")
    refused(synced.run("export", "--format", "bogus", "--out", str(tmp_path / "x")), 2, "--format")


def test_verify_refuses_endless_inputs(synced: Client) -> None:
    args = ["verify", "--certificate-identity", "a@b.c", "--certificate-oidc-issuer", "https://i"]
    refused(synced.run(*args, "--bundle", "/dev/zero", "sha256:" + "ab" * 32), 2, "not a regular file")
    refused(synced.run(*args, "--bundle", str(synced.config), "/dev/zero"), 2, "not a regular file")
    refused(
        synced.run(
            *args[:3], "--certificate-oidc-issuer", "", "--bundle", str(synced.config), "sha256:" + "ab" * 32
        ),
        2,
        "must not be empty",
    )


def test_anchor_replaced_on_disk_is_refused(synced: Client, tmp_path: Path) -> None:
    """The HIGH finding: a cache writer swaps in its own root (and generation): every read
    and every sync now fails closed because the config pins the anchor's digest."""
    import yaml

    from stella_trust.demo.repository import DemoRepository

    pinned = yaml.safe_load(synced.config.read_text())["attestor"]["trust_repo"]["anchor_sha256"]
    assert pinned == __import__("hashlib").sha256(synced.root.read_bytes()).hexdigest()
    attacker = DemoRepository(tmp_path / "attacker")
    store = Store(synced.cache)
    store.anchor_path.write_bytes(attacker.repo.root_bytes(1))
    refused(synced.run("status"), 3, "trust anchor changed on disk")
    refused(synced.run("sync"), 3, "trust anchor changed on disk")
