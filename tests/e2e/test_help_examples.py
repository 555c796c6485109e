"""The examples of the group --help pages run as written (issue 20).

`trust snapshot`, `trust config`, `trust repo` and `trust repo root` had no example; the ones
they show now are taken from the rendered --help and run for real, in order, with only the
machine's own paths swapped for temporary ones (/srv/www/tuf, /media/usb, the host's config
and cache). Each must exit 0, and what it did is checked afterwards.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import typer

from stella_trust._cli.app import full_app
from tests.conftest import Result, ok
from tests.e2e.conftest import Client
from tests.e2e.operators import operator_env


def examples(*path: str) -> list[list[str]]:
    """The example command lines of `trust PATH --help`, as argv words."""
    command = typer.main.get_command(full_app())
    ctx = typer.Context(command, info_name="trust", terminal_width=200)  # no wrapping
    for word in path:
        command = command.commands[word]  # type: ignore[attr-defined]
        ctx = typer.Context(command, info_name=word, parent=ctx, terminal_width=200)
    text = command.get_help(ctx)
    section = text[text.index("Example") :]
    lines = [line.strip() for line in section.splitlines() if re.match(r"\s+trust ", line)]
    assert lines, f"no example in trust {' '.join(path)} --help"
    return [shlex.split(line) for line in lines]


def run(words: list[str], cwd: Path, env: dict[str, str], swap: dict[str, str]) -> Result:
    argv = [sys.executable, "-m", "stella_trust"]
    for word in words[1:]:
        for old, new in swap.items():
            word = word.replace(old, new)
        argv.append(word)
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_repo_and_repo_root_examples_run_as_written(tmp_path: Path) -> None:
    (tmp_path / "trusted_root.json").write_text('{"mediaType": "example"}\n')
    env = operator_env(STELLA_ROOT4_PASSPHRASE="correct horse root four")
    served = tmp_path / "served"
    for words in examples("repo"):
        ok(run(words, tmp_path, env, {"/srv/www/tuf": str(served)}))
    assert (served / "metadata" / "timestamp.json").is_file()  # published, then checked green
    workspace = tmp_path / "tuf-workspace"
    for words in examples("repo", "root"):  # "in the workspace directory"
        ok(run(words, workspace, env, {}))
    status = ok(run(["trust", "repo", "status", "--json"], workspace, env, {})).envelope()["result"]
    assert status["roles"]["root"]["version"] == 2 and status["roles"]["root"]["threshold"] == 3


def test_snapshot_and_config_examples_run_as_written(tmp_path: Path, synced: Client) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    swap = {"/media/usb": str(usb), "/etc/stella-trust/trust.yaml": str(synced.config)}
    host = ["trust", "--config", str(synced.config), "--cache-dir", str(synced.cache)]
    for words in [*examples("snapshot"), *examples("config")]:
        if "--config" not in words:  # this host's config and cache, as its operator would name them
            words = [*host, *words[1:]]
        result = ok(run(words, tmp_path, synced.env, swap))
        if words[-1] == "--json":
            assert result.envelope()["result"]["config"] == str(synced.config)
    assert [p.name for p in usb.iterdir()] == ["trust-2026-01-25.tar.zst"]
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"
