"""Shared by unit and e2e tests: real repositories (built with stella_trust.repository)
served on 127.0.0.1 with injectable faults, a clean environment, and the assertions on what
a run printed (`ok`, `refused`). The driver for the real CLI lives in tests/e2e/conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RecordingHandler, RepositoryServer

ENDLESS_CAP_BYTES = 64 * 1024 * 1024  # the endless response stops by itself
FAULT_SECONDS_CAP = 20.0


class FaultyHandler(RecordingHandler):
    """Serves the repository, except where a test injected a fault for a path suffix."""

    server: FaultyServer

    def do_GET(self) -> None:
        fault = self.server.fault_for(self.path)
        if fault is None:
            super().do_GET()
            return
        with self.server.lock:
            self.server.requests.append(self.path)
        kind, value = fault
        if kind == "status":
            self.send_error(int(value))
        elif kind == "body":
            self.send_response(200)
            self.send_header("Content-Length", str(len(value)))
            self.end_headers()
            self.wfile.write(value)
        elif kind == "endless":
            self.send_response(200)
            self.end_headers()
            sent, started = 0, time.monotonic()
            chunk = b"{" * 65536
            try:
                while sent < ENDLESS_CAP_BYTES and time.monotonic() - started < FAULT_SECONDS_CAP:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
        elif kind == "slow":
            data = (self.server.directory / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            started = time.monotonic()
            try:
                for byte in data:
                    if time.monotonic() - started > FAULT_SECONDS_CAP:
                        break
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(float(value))  # the fault itself: a slow server, not synchronisation
            except OSError:
                pass


class FaultyServer(RepositoryServer):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory, handler=FaultyHandler)
        self.faults: dict[str, tuple[str, Any]] = {}

    def fault_for(self, path: str) -> tuple[str, Any] | None:
        with self.lock:
            for suffix, fault in self.faults.items():
                if path.endswith(suffix):
                    return fault
        return None

    def inject(self, suffix: str, kind: str, value: Any = None) -> None:
        with self.lock:
            self.faults[suffix] = (kind, value)

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus anything that could steer the client elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STELLA_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def envelope(self) -> dict[str, Any]:
        """The one JSON object every `--json` command prints (README "JSON output")."""
        document = json.loads(self.out)
        assert isinstance(document, dict), self.out
        assert set(document) == {"command", "ok", "result", "warnings", "error"}, sorted(document)
        assert document["ok"] is (document["error"] is None), document
        assert document["ok"] is (self.code == 0), (self.code, document)
        return document

    def json(self) -> Any:
        """The command's `result`; for a failure without one, the envelope's `error`."""
        document = self.envelope()
        return document["result"] if document["result"] is not None else document["error"]


@pytest.fixture
def demo(tmp_path: Path) -> DemoRepository:
    return DemoRepository(tmp_path / "repository")


@pytest.fixture
def server(demo: DemoRepository) -> Iterator[FaultyServer]:
    srv = FaultyServer(demo.repo.path).start()
    try:
        yield srv
    finally:
        srv.stop()


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout:{result.out}\nstderr:{result.err}"
    return result


def refused(result: Result, code: int, *words: str) -> tuple[str, str]:
    """The one assertion for a refusal: exit `code`, stderr exactly one `error:` line holding
    every word and one `hint:` line, no traceback anywhere; returns (error, hint)."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 2, f"not one error line and one hint: {result.err!r}"
    error, hint = lines
    assert error.startswith("error: ") and hint.startswith("hint: "), result.err
    for word in words:
        assert word in error, (word, error)
    return error, hint


def libfaketime() -> str:
    """The libfaketime preload library (Debian's `faketime` package)."""
    for candidate in (
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ):
        if os.path.exists(candidate):
            return candidate
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is missing (apt-get install faketime)"
    return str(found[0])


def faked_clock(clock: str | None) -> dict[str, str]:
    """The environment that starts a process's wall clock at `clock` ('2025-10-20 12:00:00',
    or an offset such as '+6h'), through libfaketime preloaded directly.

    Not the `faketime` wrapper: it creates a semaphore and a shared-memory segment named by
    its own pid and removes them only when it exits normally, so a wrapper killed by a test's
    timeout leaves them behind, and a later wrapper given the same pid fails at random under
    `-n auto` ("faketime: sem_open: File exists"). A single process needs no shared clock."""
    if not clock:
        return {}
    if clock.startswith(("+", "-")):
        spec = clock
    else:  # what the wrapper does with an absolute time ('@EPOCH' too): `date` reads it
        absolute = subprocess.run(
            ["date", "-d", clock, "+%Y-%m-%d %H:%M:%S"], capture_output=True, text=True, check=True
        )
        spec = "@" + absolute.stdout.strip()
    return {"LD_PRELOAD": libfaketime(), "FAKETIME": spec}


def under_clock(clock: str | None) -> list[str]:
    """An argv prefix that runs the command on `clock` (see faked_clock); [] for the real one."""
    return ["env", *(f"{k}={v}" for k, v in faked_clock(clock).items())] if clock else []
