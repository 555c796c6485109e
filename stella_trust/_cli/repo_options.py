"""What every `trust repo` command shares: the --path/--from/--to options, how a
workspace and a source are opened, and how an operator Outcome becomes the one envelope.

The repository's command functions are imported inside each command, when it runs:
`trust repo --help` and completion import none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import reported

if TYPE_CHECKING:
    from stella_trust.repository.outcome import Outcome
    from stella_trust.repository.source import Source
    from stella_trust.repository.workspace import Workspace

PathOption = Annotated[Path, typer.Option("--path", help="Workspace directory (default: here).")]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="URL|DIR",
        help="Pull the published repository first (verified), so this machine signs on the "
        "published counters, never its own.",
    ),
]
ToOption = Annotated[
    Path | None,
    typer.Option(
        "--to", metavar="DIR", help="Then push the result to the served directory (timestamp last)."
    ),
]


def source_of(spec: str) -> Source:
    """A published repository to read: a directory, or a URL read through the client's own
    fetcher (per-operation timeout, one deadline for the whole request from connect to the
    last byte, proxies, TLS and identity encoding as `trust sync` has them; repository/ may
    not import it, so it is handed in here)."""
    from stella_trust.repository import source

    if spec.startswith(("http://", "https://")):
        from stella_trust._internal.net.fetcher import HttpxFetcher

        fetcher = HttpxFetcher(timeout=source.REQUEST_TIMEOUT, deadline=source.REQUEST_DEADLINE)
        return source.Source(spec, fetcher=fetcher)
    return source.Source(spec)


def open_workspace(path: Path, source: str | None = None, to: Path | None = None) -> Workspace:
    """The workspace at --path, pulling from --from and publishing into --to."""
    from stella_trust.repository.workspace import Workspace

    return Workspace(path, source_of(source) if source is not None else None, to)


def run_signing(
    path: Path, source: str | None, to: Path | None, as_json: bool, step: Callable[[Workspace], Outcome]
) -> None:
    """Run a signing step on the published state (`--from`), publishing into `--to DIR`
    before this workspace's own repository/ is written; `--to DIR` alone starts from DIR.
    The whole step holds DIR's lock, so two publishers never interleave."""

    def action(env: Envelope) -> None:
        workspace = open_workspace(path, source, to)
        with workspace.session():
            outcome = step(workspace)
        emit(outcome, env)

    run(as_json, action)


def emit(outcome: Outcome, env: Envelope) -> None:
    """An operator Outcome into the envelope: `result` holds the message and the details;
    a step that is not done (staged, below threshold, a check that found problems) exits 1
    with the message as error and the step's own hint."""
    env.result = {"message": outcome.message, "done": outcome.done, **outcome.details}
    env.say(outcome.message)
    for warning in outcome.warnings:
        env.warn(warning)
    if not outcome.done:
        from stella_trust.repository.outcome import RepoError

        env.fail(
            RepoError(
                outcome.message.splitlines()[0],
                hint=outcome.hint or "see the message above; nothing was published",
            )
        )


def run(as_json: bool, action: Callable[[Envelope], Any]) -> None:
    """A command body inside its envelope (one JSON shape, one-line errors)."""
    with reported(as_json) as env:
        action(env)
