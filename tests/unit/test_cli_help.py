"""Every command and subcommand explains itself: an example in --help, readable metavars,
whole summaries; shell completion works (issue 12, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer

from stella_trust._cli.app import app, main, readable_metavars


def command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def examples_of(text: str) -> str:
    """The part of a --help text from its "Example(s)" heading on."""
    assert "Example" in text, text
    return text[text.index("Example") :]


@pytest.mark.parametrize("path", [[], *command_paths()], ids=lambda p: " ".join(p) or "trust")
def test_every_command_and_group_has_an_example_and_readable_metavars(
    path: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Groups too (`trust snapshot`, `trust config`, `trust repo`, `trust repo root` had
    none, issue 20): an example that names the command itself, complete (no `...`
    placeholder a user would have to guess), and no typer-internal metavars."""
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    name = " ".join(["trust", *path])
    assert "Example" in text, f"{name} --help has no example:\n{text}"
    examples = examples_of(text)
    assert name in " ".join(examples.split()), f"{name} --help: no example runs {name}:\n{examples}"
    assert "..." not in examples and "…" not in examples, f"{name} --help: a placeholder example\n{examples}"
    for ugly in ("<str>", "<path>", "<list[str]>", "<int", "{file}", "{name}", "{bundle}"):
        assert ugly not in text, f"{name}: {ugly}\n{text}"


def test_the_top_level_list_shows_whole_summaries(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "..." not in text.split("Commands:")[1].split("Examples:")[0]
    command = typer.main.get_command(app)
    readable_metavars(command)
    assert command.commands["sync"].short_help.startswith("Refresh trust from the repository")  # type: ignore[attr-defined]


def test_completion_script_and_completions() -> None:
    # typer finds the shell from the process tree (shellingham), so run it from a bash that
    # stays alive (`; exit`): under pytest-xdist the tree may hold no shell at all
    script = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' -m stella_trust --show-completion bash; exit $?"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 0 and "_trust_completion" in script.stdout.replace("-", "_")
    env = {
        **os.environ,
        "_TRUST_COMPLETE": "complete_bash",
        "COMP_WORDS": "trust repo bump",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stella_trust"], capture_output=True, text=True, env=env, check=False
    )
    assert done.stdout.split() == ["bump-online"], done.stdout + done.stderr


def test_the_completion_options_still_work_beside_a_command_word(capsys: pytest.CaptureFixture[str]) -> None:
    """A run naming one command builds it without typer's completion options (issue 24: typer
    validates each option's value, even an absent one, at every run), unless the arguments name
    one, or a near miss whose error suggests them."""
    script = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' -m stella_trust --show-completion bash status; exit $?"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 0 and "_trust_completion" in script.stdout.replace("-", "_"), script.stderr
    with pytest.raises(SystemExit) as exited:
        main(["--install-completon", "status"])
    assert exited.value.code == 2
    assert "--install-completion" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--show-keys-please", "status"])  # not a completion word: only `status` is built
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "No such option: --show-keys-please" in error and "completion" not in error


def test_version_is_printed_though_no_command_loads_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`trust --version` imports the version when asked (issue 24: `trust status` never does)."""
    from stella_trust._version import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"stella-trust {__version__}\n"
