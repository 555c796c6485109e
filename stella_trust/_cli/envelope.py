"""One JSON shape for every command, success or failure, and the one-line error rule.

With `--json`, stdout carries exactly one object:

    {"command": "sync", "ok": true, "result": {...}, "warnings": ["..."], "error": null}
    {"command": "sync", "ok": false, "result": null, "warnings": [],
     "error": {"message": "...", "hint": "...", "exit_code": 1}}

also when the command fails, is interrupted (Ctrl-C: exit 130) or meets a bug. `result`
is the command's own typed object (never a pre-formatted string); `warnings` are also
printed on stderr as `warning: ...`, so a human watching a script sees them. Without
`--json` the command prints its text and errors are one `error:` line and one `hint:` line
on stderr; a traceback only with `--debug` / STELLA_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from stella_trust._internal.redact import redact, redact_all
from stella_trust.errors import EXIT_USAGE, InternalError, StellaError

OS_HINT = (
    "check permissions and free space (the cache is written by the stella-trust user; "
    "readers need the stella-trust group); cached trust is unchanged"
)
INTERRUPTED_HINT = "nothing half-done was kept; cached trust is unchanged"


class HostKind:
    """What the command's settings said about this host (set once they are loaded): the
    hints printed are the ones that lead out of the state on this kind of host. (The CLI's
    own records are plain classes: a dataclass costs every start-up ~0.5 ms to build.)"""

    __slots__ = ("kind",)

    def __init__(self, kind: str = "unknown") -> None:
        """`kind`: "connected", "bundle-only" or "unknown" (no config read)."""
        self.kind = kind


HOST = HostKind()


class CommandFailed(Exception):
    """Raised by `Envelope.fail`: end the command with this error (and any result set)."""

    def __init__(self, error: StellaError) -> None:
        """Carry `error` to the envelope, which renders it as one line plus a hint."""
        super().__init__(error.message)
        self.error = error


class Envelope:
    """What a command reports: its name, its typed result and its warnings, printed as one JSON
    object with `--json` or as text without."""

    def __init__(self, command: str, as_json: bool, result: Any = None) -> None:
        """An envelope with no warnings yet; the command sets `result`."""
        self.command = command
        self.as_json = as_json
        self.result = result
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        """A warning: on stderr now, and in the JSON envelope."""
        text = redact(text)
        self.warnings.append(text)
        typer.echo(f"warning: {text}", err=True)

    def say(self, text: str) -> None:
        """Human output (stdout) when not in JSON mode."""
        if not self.as_json:
            typer.echo(redact(text))

    def fail(self, error: StellaError) -> None:
        """End the command with `error`, keeping the result set so far: a caller of `--json` gets
        what was done and why it stopped in one object."""
        raise CommandFailed(error)

    def hint(self, error: StellaError) -> str | None:
        """The error's hint for this host; a usage error without one points at the command's
        --help (every option there has an example), as typer's own refusals do."""
        hint = error.hint_for(HOST.kind)
        if not hint and error.exit_code == EXIT_USAGE:
            hint = f"see `trust {self.command} --help`"
        return hint

    def document(self, error: StellaError | None) -> dict[str, Any]:
        """The envelope, with no credential of a mirror URL anywhere in it (decision 18)."""
        document: dict[str, Any] = redact_all(
            {
                "command": self.command,
                "ok": error is None,
                "result": self.result,
                "warnings": self.warnings,
                "error": None
                if error is None
                else {
                    "message": error.message,
                    "hint": self.hint(error),
                    "exit_code": error.exit_code,
                },
            }
        )
        return document


def debugging() -> bool:
    """`--debug` or STELLA_DEBUG: read from argv directly, since an error may come before typer has
    parsed the options."""
    return os.environ.get("STELLA_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]


def internal_error(exc: BaseException) -> StellaError:
    """The last resort: an exception nobody translated, as one line (traceback if debugging)."""
    if debugging():
        traceback.print_exception(exc, file=sys.stderr)
    return InternalError.wrapping(exc)


def _finish(env: Envelope, error: StellaError) -> None:
    """The error as one line and a hint on stderr (also with `--json`, for a person watching a
    script), the envelope on stdout with `--json`, then exit with the error's code."""
    if env.as_json:
        typer.echo(json.dumps(env.document(error), indent=2))
    typer.echo(f"error: {redact(error.message)}", err=True)
    hint = env.hint(error)
    if hint:
        typer.echo(f"hint: {redact(hint)}", err=True)
    raise typer.Exit(error.exit_code)


@contextmanager
def envelope(command: str, as_json: bool) -> Iterator[Envelope]:
    """Run a command body; print its envelope (`--json`) or its error line, exit right."""
    env = Envelope(command, as_json)
    try:
        yield env
    except typer.Exit as done:  # a deliberate exit code (0 = success) from the body
        code = done.exit_code
        if code:
            _finish(env, StellaError(f"{command} failed (exit {code})", exit_code=code))
        if as_json:
            typer.echo(json.dumps(env.document(None), indent=2))
        raise
    except CommandFailed as failed:
        _finish(env, failed.error)
    except StellaError as error:
        _finish(env, error)
    except OSError as exc:  # permissions, a full disk, an unwritable --out: the OS's words, one line
        where = f": {exc.filename}" if exc.filename else ""
        _finish(env, StellaError(f"{exc.strerror or exc}{where}", hint=OS_HINT))
    except KeyboardInterrupt:
        _finish(env, StellaError("interrupted", hint=INTERRUPTED_HINT, exit_code=130))
    except (typer.Abort, SystemExit):
        raise
    except Exception as exc:
        _finish(env, internal_error(exc))
    else:
        if as_json:
            typer.echo(json.dumps(env.document(None), indent=2))
