"""Real repositories (built with stella_trust.repository), served on 127.0.0.1, and a
driver for the real `trust` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

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


@dataclass
class Client:
    """One host: its own config file and cache directory, driven through the real CLI."""

    home: Path
    url: str
    root: Path
    env: dict[str, str] = field(default_factory=clean_env)
    # `faketime CLOCK` ('2025-10-20 12:00:00' or '+400d'): python-tuf reads the wall clock
    clock: str | None = None

    @property
    def config(self) -> Path:
        return self.home / "trust.yaml"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    def argv(self, *args: str) -> list[str]:
        return [
            *(
                ["faketime", *(["-f"] if self.clock.startswith(("+", "-")) else []), self.clock]
                if self.clock
                else []
            ),
            sys.executable,
            "-m",
            "stella_trust",
            "--config",
            str(self.config),
            "--cache-dir",
            str(self.cache),
            *args,
        ]

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """The CLI in the background (for concurrency and kill tests)."""
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, **kwargs)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        done = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=env or self.env,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def init(self, *extra: str, sync: bool = True) -> Result:
        args = [
            "init",
            "--tuf-url",
            self.url,
            "--root",
            str(self.root),
            "--pin",
            "rekor-key-v1,rekor-key-v2",
            *extra,
        ]
        if not sync:
            args.append("--no-sync")
        return self.run(*args)

    def status(self, *extra: str) -> Result:
        return self.run("status", "--json", *extra)

    def set_config(self, **values: Any) -> None:
        document = yaml.safe_load(self.config.read_text()) if self.config.exists() else {}
        document.setdefault("attestor", {}).setdefault("trust_repo", {}).update(values)
        self.config.write_text(yaml.safe_dump(document))


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


@pytest.fixture
def client(tmp_path: Path, server: FaultyServer, demo: DemoRepository) -> Client:
    home = tmp_path / "host"
    home.mkdir()
    return Client(home=home, url=server.url, root=demo.root_path)


@pytest.fixture
def synced(client: Client) -> Client:
    """A host that ran init + first sync successfully."""
    result = client.init()
    assert result.code == 0, result.err
    return client


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout:{result.out}\nstderr:{result.err}"
    return result
