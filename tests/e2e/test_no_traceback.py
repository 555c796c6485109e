"""No traceback, ever: inputs that used to crash now end in one line and a hint."""

from __future__ import annotations

import json
from pathlib import Path

from stella_trust._internal.store import Store
from tests.conftest import Client, Result, clean_env, ok
from tests.e2e.test_repo_commands import repo, workspace  # noqa: F401  (fixture)


def one_line(result: Result, code: int, words: str) -> None:
    assert result.code == code, result.err
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = result.err.splitlines()
    assert lines[0].startswith("error: ") and words in lines[0], result.err
    assert all(line.startswith("hint: ") for line in lines[1:]), result.err


def test_missing_service_map_file_from_the_environment(synced: Client, tmp_path: Path) -> None:
    env = clean_env(STELLA_SIGSTORE_SERVICE_MAP=str(tmp_path / "absent.json"))
    one_line(synced.run("sync", env=env), 1, "Service map not found")
    one_line(synced.run("status", env=env), 3, "Service map not found")


def test_durations_that_would_overflow(synced: Client, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar.zst"
    ok(synced.run("snapshot", "export", "--out", str(bundle)))
    one_line(synced.run("import", str(bundle), "--reject-if-stale", "inf"), 2, "not a finite duration")
    one_line(synced.run("import", str(bundle), "--reject-if-stale", "1e12d"), 2, "longer than 100 years")


def test_operator_inputs_that_would_overflow_or_are_corrupt(workspace: Path, tmp_path: Path) -> None:  # noqa: F811
    one_line(repo(workspace, "check", "--within", "1e12d"), 2, "longer than 100 years")
    one_line(repo(tmp_path / "other", "init", "--expires", "timestamp=inf"), 2, "--expires")
    (workspace / "keys" / "index.json").write_text("{not json")
    one_line(repo(workspace, "status"), 1, "index.json")
    (workspace / "repo.json").write_text(json.dumps({"expires": "soon"}))
    one_line(repo(workspace, "status"), 1, "repo.json is corrupt")


def test_rollback_floor_of_the_wrong_type(synced: Client) -> None:
    store = Store(synced.cache)
    state = json.loads(store.state_path.read_text())
    state["floor"]["timestamp"] = {"version": "many"}
    store.state_path.write_text(json.dumps(state))
    one_line(synced.run("status"), 3, "rollback floor")
    state["floor"]["timestamp"] = {"version": 1}  # no keyids: refused, never silently skipped
    store.state_path.write_text(json.dumps(state))
    one_line(synced.run("status"), 3, "rollback floor")
