"""What every command shares: global options, settings loading, error rendering.

Errors are one line plus a `hint:` line on stderr (and one JSON object on stdout with
`--json`); anything unexpected becomes `error: internal error: ...` with a hint to
report it, and the traceback only with `--debug` / STELLA_DEBUG=1. Never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stella_trust.errors import InternalError, NotInitialisedError, StellaError, UsageError

if TYPE_CHECKING:
    from datetime import timedelta

    from stella_trust._internal.settings import TrustRepoSettings

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
INTERNAL_HINT = InternalError.default_hint
OS_HINT = (
    "check permissions and free space (the cache is written by the stella-trust user; "
    "readers need the stella-trust group); cached trust is unchanged"
)


@dataclass
class Globals:
    config: Path | None
    cache_dir: Path | None
    debug: bool = False


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Globals) else Globals(None, None)


def config_path(ctx: typer.Context) -> Path:
    from stella_trust._internal.settings import default_config_path

    return globals_of(ctx).config or default_config_path()


def load(ctx: typer.Context, **flags: Any) -> TrustRepoSettings:
    """The merged settings (file < environment < these flags), `--cache-dir` applied."""
    from stella_trust._internal.settings import load_settings

    g = globals_of(ctx)
    if g.cache_dir is not None:
        flags["local_cache_path"] = g.cache_dir
    path = config_path(ctx)
    named = g.config is not None or bool(os.environ.get("STELLA_TRUST_CONFIG"))
    if named and not path.exists():
        raise NotInitialisedError(
            f"config {path} does not exist: this host is not initialised with it",
            hint="check --config / STELLA_TRUST_CONFIG, or run `trust init --config PATH --tuf-url URL ...`",
        )
    return load_settings(path, flags)


def debugging() -> bool:
    return os.environ.get("STELLA_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]


def fail(error: StellaError, as_json: bool) -> None:
    """One clear line and a hint on stderr (and an object on stdout for --json); then exit."""
    if as_json:
        typer.echo(json.dumps({"error": error.message, "hint": error.hint, "exit_code": error.exit_code}))
    typer.echo(f"error: {error.message}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)
    raise typer.Exit(error.exit_code)


def internal_error(exc: BaseException) -> StellaError:
    """The last resort: an exception nobody translated, as one line (traceback if debugging)."""
    if debugging():
        traceback.print_exception(exc, file=sys.stderr)
    return InternalError.wrapping(exc)


@contextmanager
def reported(as_json: bool = False) -> Iterator[None]:
    """Run a command body: StellaError and anything unexpected become one line + hint."""
    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except StellaError as error:
        fail(error, as_json)
    except OSError as exc:  # permissions, a full disk, an unwritable --out: the OS's words, one line
        where = f": {exc.filename}" if exc.filename else ""
        fail(StellaError(f"{exc.strerror or exc}{where}", hint=OS_HINT), as_json)
    except KeyboardInterrupt:
        if as_json:
            interrupted = {"error": "interrupted", "hint": "cached trust is unchanged", "exit_code": 130}
            typer.echo(json.dumps(interrupted))
        typer.echo("interrupted; cached trust is unchanged", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        fail(internal_error(exc), as_json)


def duration_option(text: str | None, flag: str) -> timedelta | None:
    """A `7d`/`36h`/`90m` option as a timedelta (None stays None); a usage error otherwise."""
    from stella_trust._internal.timefmt import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def split_list(values: list[str] | None) -> list[str] | None:
    """Repeatable options that also take comma lists: `--pin a,b --pin c`."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
