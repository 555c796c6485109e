"""`trust doctor` and `trust config show`: the real CLI in a subprocess, against a real
repository on 127.0.0.1.

Tests usually run as root here, so `chmod` cannot make the cache unwritable; as in
test_agent_faults.py, an unwritable cache is a read-only bind mount (root only, skipped
where mounting is not permitted) or, for any user, a cache path under a regular file.
Unprivileged runs use `chmod 0o500` instead of the mount.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FaultyServer, Result, clean_env, ok
from tests.e2e.conftest import Client

CHECK_KEYS = {"check", "state", "detail", "hint"}
HEALTHY = [
    "config",
    "cache",
    "anchor",
    "trust",
    "freshness",
    "pins",
    "sync",
    "repository",
    "clock",
    "metrics",
]


def doctor(client: Client, *extra: str, env: dict[str, str] | None = None) -> Result:
    return client.run("doctor", "--json", *extra, env=env)


def checks(result: Result) -> dict[str, dict[str, Any]]:
    """The doctor's checks by name, whatever the exit code; the shape checked on the way."""
    document = result.envelope()
    assert document["command"] == "doctor"
    listed = document["result"]["checks"]
    for entry in listed:
        assert set(entry) == CHECK_KEYS, entry
        assert entry["state"] in ("ok", "warn", "fail"), entry
        assert isinstance(entry["detail"], str) and entry["detail"]
        assert (entry["hint"] is None) is (entry["state"] == "ok"), entry
    names = [entry["check"] for entry in listed]
    assert len(names) == len(set(names)), names
    return {entry["check"]: entry for entry in listed}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def unwritable(cache: Path) -> Iterator[None]:
    """The cache as a directory this user cannot write: chmod 0500, or (root ignores modes)
    a read-only bind mount of it."""
    if os.geteuid() != 0:
        cache.chmod(0o500)
        try:
            yield
        finally:
            cache.chmod(0o750)
        return
    if shutil.which("mount") is None:
        pytest.skip("root ignores file modes and there is no mount(8) to make a read-only cache")

    def mount(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"mount not permitted here: {done.stderr.strip()}")

    mount("--bind", str(cache), str(cache))
    try:
        mount("-o", "remount,ro,bind", str(cache))
        yield
    finally:
        subprocess.run(["umount", "-l", str(cache)], capture_output=True, check=False)


# ---- doctor ---------------------------------------------------------------------------------


def test_doctor_passes_on_a_healthy_host(synced: Client) -> None:
    result = ok(doctor(synced))
    document = result.envelope()
    assert document["ok"] is True and document["error"] is None and document["warnings"] == []
    found = checks(result)
    assert list(found) == HEALTHY
    assert {c["state"] for c in found.values()} == {"ok"}, found
    assert document["result"]["counts"] == {"ok": len(HEALTHY), "warn": 0, "fail": 0}
    assert document["result"]["config"] == str(synced.config)
    assert "re-verified from the anchor" in found["trust"]["detail"]
    assert found["freshness"]["detail"].startswith("fresh")
    assert "HTTP 200" in found["repository"]["detail"]

    text = ok(synced.run("doctor"))
    lines = text.out.splitlines()
    for name in HEALTHY:
        assert any(line.startswith("ok    ") and f" {name}: " in line for line in lines), (name, text.out)
    assert not any(line.startswith(("warn", "fail")) for line in lines), text.out
    assert "Traceback" not in text.err and "error:" not in text.err


def test_doctor_fails_on_a_cache_this_user_cannot_write(synced: Client) -> None:
    with unwritable(synced.cache):
        result = doctor(synced)
        text = synced.run("doctor")
    assert result.code == 1, (result.out, result.err)
    found = checks(result)
    cache = found["cache"]
    assert cache["state"] == "fail"
    assert str(synced.cache) in cache["detail"] and "not writable" in cache["detail"]
    assert "stella-trust user" in cache["hint"]
    # still readable: the trust itself is checked (and fine), only the cache fails
    assert found["trust"]["state"] == "ok" and found["anchor"]["state"] == "ok"
    error = result.envelope()["error"]
    assert error["exit_code"] == 1 and "cache" in error["message"]

    assert text.code == 1
    assert any(line.startswith("fail  cache: ") for line in text.out.splitlines()), text.out
    assert "stella-trust user" in text.out  # the hint under the failing line
    assert "Traceback" not in text.err


def test_doctor_fails_on_a_cache_path_that_cannot_exist(synced: Client, tmp_path: Path) -> None:
    """Any user: a cache path under a regular file (ENOTDIR) is a cache nobody can write."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    argv = synced.argv("doctor", "--json")
    argv[argv.index("--cache-dir") + 1] = str(blocker / "cache")
    done = subprocess.run(argv, capture_output=True, text=True, env=synced.env, timeout=60, check=False)
    result = Result(done.returncode, done.stdout, done.stderr)
    found = checks(result)
    assert result.code == 1
    assert found["cache"]["state"] == "fail" and "a part of that path is a file" in found["cache"]["detail"]
    assert "stella-trust" in found["cache"]["hint"]
    # nothing to verify without a cache: the trust checks are left out, the rest still run
    assert "trust" not in found and "freshness" not in found
    assert found["repository"]["state"] == "ok"


def test_doctor_warns_on_a_clock_minutes_off(synced: Client) -> None:
    ahead = dataclasses.replace(synced, clock="+10m")  # the server's Date header is real time
    result = ok(doctor(ahead))
    found = checks(result)
    clock = found["clock"]
    assert clock["state"] == "warn", clock
    assert "ahead of the repository's Date header" in clock["detail"]
    assert "TUF expiry" in clock["hint"]
    assert any(w.startswith("clock: ") for w in result.envelope()["warnings"])
    assert {c["state"] for name, c in found.items() if name != "clock"} == {"ok"}


def test_doctor_fails_on_a_clock_hours_off(synced: Client) -> None:
    ahead = dataclasses.replace(synced, clock="+2h")
    result = doctor(ahead)
    assert result.code == 1
    found = checks(result)
    assert found["clock"]["state"] == "fail", found["clock"]
    assert "2 hours ahead" in found["clock"]["detail"]
    assert "clock" in result.envelope()["error"]["message"]
    text = ahead.run("doctor")
    assert text.code == 1 and "fail  clock: 2 hours ahead" in text.out


def test_doctor_fails_on_stale_trust(synced: Client) -> None:
    later = dataclasses.replace(synced, clock="+400d")
    found = checks(doctor(later))
    assert found["freshness"]["state"] == "fail" and "stale" in found["freshness"]["detail"]
    assert "trust sync" in found["freshness"]["hint"]
    assert found["trust"]["state"] == "ok"  # it still verifies: it is only too old


def test_doctor_fails_on_an_unreachable_repository(synced: Client) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    synced.set_config(tuf_url=dead)
    result = doctor(synced)
    assert result.code == 1
    found = checks(result)
    repository = found["repository"]
    assert repository["state"] == "fail" and dead in repository["detail"]
    assert "tuf_url" in repository["hint"]
    assert "clock" not in found  # nothing answered: nothing to compare the clock with
    assert found["trust"]["state"] == "ok"  # cached trust is unaffected
    assert result.envelope()["error"]["message"].endswith("checks failed: repository")


def test_doctor_offline_mode_contacts_nothing(synced: Client, server: FaultyServer) -> None:
    synced.set_config(offline_mode=True)
    server.take_requests()
    found = checks(ok(doctor(synced)))
    assert found["repository"] == {
        "check": "repository",
        "state": "ok",
        "detail": "offline mode, not contacted",
        "hint": None,
    }
    assert found["clock"]["state"] == "ok" and "offline" in found["clock"]["detail"]
    assert server.take_requests() == []


def test_doctor_checks_the_agent_metrics_file(synced: Client) -> None:
    metrics = synced.home / "textfile" / "stella_trust.prom"
    synced.set_config(metrics_path=str(metrics))
    found = checks(ok(doctor(synced)))  # a warning, not a failure
    assert found["metrics"]["state"] == "warn" and "does not exist" in found["metrics"]["detail"]
    assert "agent" in found["metrics"]["hint"]

    ok(synced.run("agent", "--once"))  # writes the textfile, as the timer would
    assert metrics.is_file()
    found = checks(ok(doctor(synced)))
    assert found["metrics"]["state"] == "ok" and str(metrics) in found["metrics"]["detail"]


def test_doctor_reports_a_bad_config_without_a_traceback(synced: Client) -> None:
    synced.set_config(refresh_interval_minutes="soon")
    result = doctor(synced)
    assert result.code == 1
    found = checks(result)
    assert list(found) == ["config"]
    assert found["config"]["state"] == "fail" and "refresh_interval_minutes" in found["config"]["detail"]
    assert "Traceback" not in result.err


# ---- config show ----------------------------------------------------------------------------


def test_config_show_names_the_source_of_each_setting(synced: Client) -> None:
    env = clean_env(STELLA_TUF_OFFLINE_MODE="false", STELLA_NOT_A_SETTING="hunter2")
    result = ok(synced.run("config", "show", "--json", env=env))
    document = result.envelope()
    assert document["command"] == "config show" and document["ok"] is True
    shown = document["result"]
    assert set(shown) == {"config", "settings"} and shown["config"] == str(synced.config)
    rows = {row["name"]: row for row in shown["settings"]}
    for row in shown["settings"]:
        assert set(row) == {"name", "value", "source", "detail"}, row
        assert row["source"] in ("file", "env", "flag", "default"), row

    assert rows["offline_mode"] == {
        "name": "offline_mode",
        "value": False,
        "source": "env",
        "detail": "STELLA_TUF_OFFLINE_MODE",
    }
    assert rows["tuf_url"] == {
        "name": "tuf_url",
        "value": synced.url,
        "source": "file",
        "detail": str(synced.config),
    }
    assert rows["anchor_sha256"]["source"] == "file"
    assert rows["local_cache_path"] == {
        "name": "local_cache_path",
        "value": str(synced.cache),
        "source": "flag",
        "detail": "--cache-dir",
    }
    assert rows["jitter_fraction"] == {
        "name": "jitter_fraction",
        "value": 0.1,
        "source": "default",
        "detail": None,
    }
    assert rows["metadata_limits"]["value"]["timestamp"] == 16384
    assert "hunter2" not in result.out and "STELLA_NOT_A_SETTING" not in result.out


def test_config_show_text_is_an_aligned_table(synced: Client) -> None:
    env = clean_env(STELLA_TUF_ROOT_URL=synced.url)
    result = ok(synced.run("config", "show", env=env))
    lines = result.out.splitlines()
    assert lines[0] == f"config: {synced.config}"
    header, rows = lines[1], lines[2:]
    assert header.split() == ["setting", "value", "source"]
    column = header.index("value")
    by_name = {line.split()[0]: line for line in rows}
    assert all(line[column - 2 : column] == "  " for line in rows), result.out
    assert by_name["tuf_url"].endswith("env (STELLA_TUF_ROOT_URL)")
    assert by_name["local_cache_path"].endswith("flag (--cache-dir)")
    assert by_name["anchor_sha256"].endswith(f"file ({synced.config})")
    assert by_name["metadata_limits.timestamp"].split()[1] == "16384"


def test_config_show_refuses_an_invalid_setting_by_name(synced: Client) -> None:
    env = clean_env(STELLA_TUF_ROOT_URL="ftp://nowhere")
    result = synced.run("config", "show", "--json", env=env)
    assert result.code == 1
    error = result.json()
    assert "STELLA_TUF_ROOT_URL" in error["message"]
    assert "Traceback" not in result.err
