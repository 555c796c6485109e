"""What every command shares: global options, settings loading, error rendering.

Errors are one line plus a `hint:` line on stderr (and one JSON object on stdout with
`--json`); anything unexpected becomes `error: internal error: ...` with a hint to
report it, and the traceback only with `--debug` / STELLA_DEBUG=1. Never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stella_trust._cli.envelope import HOST, Envelope, debugging, envelope, internal_error
from stella_trust.errors import InternalError, NotInitialisedError, StellaError, UsageError

if TYPE_CHECKING:
    from datetime import timedelta

    from stella_trust._internal.settings import TrustRepoSettings

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help='One JSON object on stdout: {"command", "ok", "result", "warnings", "error"}.'
    ),
]
# here, not in progress.py: `trust sync` declares it, and `trust status` builds the module that
# declares sync without drawing any progress
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No progress bars (they are drawn only on a terminal, on stderr, for transfers "
        "over 1 MiB, and never with --json).",
    ),
]
INTERNAL_HINT = InternalError.default_hint
__all__ = ["INTERNAL_HINT", "debugging", "internal_error", "reported"]


class Globals:
    """The global options of a run (`--config`, `--cache-dir`, `--debug`), given before the
    subcommand. A plain class: a dataclass costs every start-up ~0.5 ms to build."""

    __slots__ = ("cache_dir", "config", "debug", "instance")

    def __init__(self, config: Path | None, cache_dir: Path | None, debug: bool = False) -> None:
        """The options as given; `instance` is set when the subcommand's `--instance` is parsed."""
        self.config = config
        self.cache_dir = cache_dir
        self.debug = debug
        # `--instance NAME` of the subcommand (decision 23); None: all / default
        self.instance: str | None = None


def _choose_instance(ctx: typer.Context, value: str | None) -> str | None:
    """`--instance NAME`, remembered beside the global options so every settings load of this
    run (`load`) reads that instance."""
    if value is not None:
        from stella_trust._internal.settings import check_instance_name

        try:
            check_instance_name(value)
        except StellaError as exc:
            raise typer.BadParameter(exc.message) from None
        globals_of(ctx).instance = value
    return value


InstanceOption = Annotated[
    str | None,
    typer.Option(
        "--instance",
        help="The named instance to act on (default: the instance `default`; sync, status and "
        "agent: every instance).",
        callback=_choose_instance,
    ),
]


def globals_of(ctx: typer.Context) -> Globals:
    """The global options from typer's root context (none given: defaults)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals(None, None)
    return root.obj


def config_path(ctx: typer.Context) -> Path:
    """The config this run reads: `--config`, else the default for this user
    (`default_config_path`)."""
    from stella_trust._internal.settings import default_config_path

    return globals_of(ctx).config or default_config_path()


def load(ctx: typer.Context, instance: str | None = None, /, **flags: Any) -> TrustRepoSettings:
    """The merged settings (file < environment < these flags), `--cache-dir` applied, of
    `instance` (else `--instance`, else the default instance). `--cache-dir` names the host's
    cache: a named instance's is `instances/<NAME>/` under it."""
    from stella_trust._internal.settings import DEFAULT_INSTANCE, instance_cache_path, load_settings

    g = globals_of(ctx)
    name = instance or g.instance or DEFAULT_INSTANCE
    if g.cache_dir is not None:
        named = name != DEFAULT_INSTANCE
        flags["local_cache_path"] = instance_cache_path(g.cache_dir, name) if named else g.cache_dir
    path = config_path(ctx)
    named = g.config is not None or bool(os.environ.get("STELLA_TRUST_CONFIG"))
    if named and not path.exists():
        raise NotInitialisedError(
            f"config {path} does not exist: this host is not initialised with it",
            hint=f"check --config / STELLA_TRUST_CONFIG, or run `{init_command(g)}`",
        )
    settings = load_settings(path, flags, instance=name)
    if settings.tuf_url or path.exists():  # else nothing says what kind of host this is
        HOST.kind = "bundle-only" if settings.bundle_only else "connected"
    return settings


def instances_of(ctx: typer.Context) -> list[str]:
    """The instances a command that acts on all of them runs over: `--instance NAME` alone, else
    every instance of the config (settings.host_instances: only `default` on a host without
    `instances:`, so such a host behaves exactly as before)."""
    from stella_trust._internal.settings import host_instances

    g = globals_of(ctx)
    if g.instance is not None:
        return [g.instance]
    return host_instances(config_path(ctx))


def several(ctx: typer.Context) -> bool:
    """Whether this run reports per instance (more than one instance, none named)."""
    return globals_of(ctx).instance is None and len(instances_of(ctx)) > 1


def init_command(g: Globals | None = None) -> str:
    """The `trust init` a hint tells the user to run, runnable once URL and ROOT.json are
    replaced by real values: the global options this command was given come *before* the
    subcommand (they belong to `trust`, not to `init`), so the init writes the config and
    the cache this command reads. Paths are shell-quoted as given (the user runs the hint
    from the same directory)."""
    import shlex

    if g is None:
        g = _current_globals()
    words = ["trust"]
    if g.config is not None:
        words += ["--config", shlex.quote(str(g.config))]
    if g.cache_dir is not None:
        words += ["--cache-dir", shlex.quote(str(g.cache_dir))]
    return " ".join([*words, "init", "--tuf-url", "URL", "--root", "ROOT.json"])


_GLOBALS: list[Globals] = []


def remember_globals(g: Globals) -> Globals:
    """The global options of this run, for hints built where no context is at hand."""
    _GLOBALS[:] = [g]
    return g


def _current_globals() -> Globals:
    """The global options of this run, where no typer context is at hand (an error's hint)."""
    return _GLOBALS[0] if _GLOBALS else Globals(None, None)


_BARE_INIT = "`trust init "


def _runnable_init_hint(hint: str) -> str:
    """A `trust init ...` in a hint, with this command's global options put where they
    work (`trust --config P init ...`): a hint that fails when followed is worse than none."""
    if _BARE_INIT not in hint:
        return hint
    g = _current_globals()
    if g.config is None and g.cache_dir is None:
        return hint
    prefix = init_command(g).removesuffix(" init --tuf-url URL --root ROOT.json")
    return hint.replace(_BARE_INIT, f"`{prefix} init ")


def fail(error: StellaError, as_json: bool) -> None:
    """One clear line and a hint on stderr (and the envelope on stdout for --json); exit."""
    with envelope(_command_name(), as_json):
        raise error


_COMMAND = ["trust"]


def name_command(words: str) -> None:
    """The command being run, as the envelope names it (set once by the entry point)."""
    _COMMAND[0] = words


def _command_name() -> str:
    """The command as the envelope names it (`repo root add-key`)."""
    return _COMMAND[0]


@contextmanager
def reported(as_json: bool = False) -> Iterator[Envelope]:
    """Run a command body inside its envelope (named after the command being run)."""
    with envelope(_command_name(), as_json) as env:
        try:
            yield env
        except NotInitialisedError as error:  # every variant of the hint (errors.hint_for)
            error.hint = _runnable_init_hint(error.hint)
            if error.connected_hint:
                error.connected_hint = _runnable_init_hint(error.connected_hint)
            if error.bundle_only_hint:
                error.bundle_only_hint = _runnable_init_hint(error.bundle_only_hint)
            raise


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
