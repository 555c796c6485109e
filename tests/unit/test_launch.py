"""The `trust` process's entry (launch.py; docs/design.md, "Collector" and decision 24): the
collector's start-up threshold set by the entry alone, given back by the long-running agent;
`trust verify`'s worker started by the entry, ended and reaped on every way out, never for help."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from stella_trust._cli import launch
from stella_trust._cli.app import main
from stella_trust._cli.words import command_words
from tests.conftest import clean_env


def _entry(
    argv: list[str], report: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`trust ARGV` through launch.main in a fresh interpreter; `report` runs at exit (atexit,
    after the command) and prints on stderr."""
    script = f"""
import atexit, gc, os, sys
from stella_trust._cli import launch
atexit.register(lambda: print("REPORT", {report}, file=sys.stderr))
sys.argv = ["trust", *{argv!r}]
launch.main()
"""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=clean_env(), check=False
    )


def _reported(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("REPORT ")]
    assert len(lines) == 1, done.stderr
    return lines[0].removeprefix("REPORT ")


def test_the_entry_raises_the_young_threshold_and_an_in_process_main_does_not() -> None:
    done = _entry(["--version"], "gc.get_threshold()")
    assert done.returncode == 0, done.stderr
    stock = launch.STOCK_THRESHOLDS
    assert _reported(done) == str((launch.STARTUP_YOUNG_THRESHOLD, *stock[1:]))
    before = gc.get_threshold()
    with pytest.raises(SystemExit):
        main(["--version"])
    assert gc.get_threshold() == before


class _Recorder:
    """In the agent's place: records the collector's thresholds when the daemon would run."""

    seen: ClassVar[list[tuple[int, ...]]] = []

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def install_signal_handlers(self) -> None:
        pass

    def run(self) -> int:
        _Recorder.seen.append(gc.get_threshold())
        return 0


@pytest.fixture
def startup_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(launch.STARTUP_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@pytest.mark.usefixtures("startup_thresholds")
def test_the_long_running_agent_gives_the_collector_its_stock_thresholds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stella_trust._agent.loop.Agent", _Recorder)
    _Recorder.seen.clear()
    with pytest.raises(SystemExit) as ended:
        main(["--config", str(tmp_path / "trust.yaml"), "--cache-dir", str(tmp_path / "cache"), "agent"])
    assert ended.value.code == 0
    assert _Recorder.seen == [launch.STOCK_THRESHOLDS]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["verify", "--bundle", "b", "a"], "verify"),
        (["--config", "verify", "--cache-dir", "c", "status"], "status"),  # option values skipped
        (["repo", "root", "add-key", "--role", "x"], "repo root add-key"),
        (["--json"], "trust"),
    ],
)
def test_command_words(argv: list[str], words: str) -> None:
    assert command_words(argv) == words


def test_verify_help_starts_no_worker_and_verify_reaps_it_on_a_usage_error(tmp_path: Path) -> None:
    """`trust verify --help` starts no worker; a run refused as a usage error after the worker
    started leaves no process behind (the entry ends and reaps it on its way out)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a worker needs two CPUs (CI has two)")
    helped = _entry(["verify", "--help"], "launch._STARTED")
    assert helped.returncode == 0 and "Usage" in helped.stdout, helped.stderr
    assert _reported(helped) == "[]"
    refused = _entry(
        ["--config", str(tmp_path / "trust.yaml"), "verify", "a.txt"], "[w.pid for w in launch._STARTED]"
    )
    assert refused.returncode == 2, refused.stderr  # no identity given: a usage error
    pids = _reported(refused)
    assert pids.startswith("[") and pids != "[]", pids  # started, and still the entry's to end
    pid = int(pids.strip("[]"))
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped before the entry returned


def test_a_worker_that_cannot_start_leaves_the_run_to_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever stops the worker (here: an import failing inside it) is no traceback from the
    entry: no worker is handed over, and the command runs as one process."""
    from stella_trust._internal import verify_worker

    def broken() -> None:
        raise ImportError("sigstore_models is not importable")

    monkeypatch.setattr(verify_worker, "start_worker", broken)
    launch._start_verify_worker()
    assert launch.started_worker() is None
