"""End-to-end tests drive the real `trust` CLI in a subprocess against real repositories
served on 127.0.0.1: `Client` is one host (its own config and cache), and every test in
this directory carries the `e2e` marker (`pytest -m "not e2e"` runs the in-process tests)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, Result, clean_env, under_clock

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory `e2e` (a hook in this conftest sees
    the whole session's items, so it filters by path)."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


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
            *under_clock(self.clock),  # `faketime CLOCK` without the wrapper's leftovers
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
