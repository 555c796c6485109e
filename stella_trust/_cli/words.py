"""The command a `trust` command line names, read without typer: the entry (launch.py) decides
from it before anything heavy is imported, app.py builds only that command, and a usage error's
envelope is named after it."""

GROUPS = ("repo", "snapshot", "config", "root")  # command groups: their next word names the command


def command_words(args: list[str]) -> str:
    """`repo root add-key --role x` -> 'repo root add-key'; global options are skipped."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--config", "--cache-dir"):
            skip = True
            continue
        if arg.startswith("-"):
            continue
        words.append(arg)
        if not words or words[-1] not in GROUPS:
            break
    return " ".join(words) or "trust"
