"""The `trust` command: one typer app, one module per command group, no trust logic.

Start-up is paid per command, not for the whole CLI (a fleet's timer runs it often): `main()` builds only the
command a run names (`trust status` imports and builds `status`, not `repo` or `verify`),
and the whole tree only for `trust --help`, completion, an unknown word or no word at all.
The module attribute `app` is that whole tree, built on first use. Heavy modules (python-
tuf's client, httpx, cryptography, rich) are imported inside the commands that need them.
No `from __future__ import annotations`: typer would evaluate the global options' annotation
strings at every run (see client.py).
"""

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust._cli.options import INTERNAL_HINT, Globals, internal_error, remember_globals
from stella_trust._cli.words import command_words

_APP_OPTIONS: dict[str, Any] = dict(
    name="trust",
    help="Keep this host's Sigstore trust material current from a TUF repository.",
    rich_markup_mode=None,  # plain help: importing rich would double `trust --help` start-up
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=True,
    epilog=(
        "Examples:\n\n"
        "  trust init --tuf-url https://tuf.example --root ./1.root.json\n\n"
        "  trust sync\n\n"
        "  trust status --show-keys --show-endpoints\n\n"
        "  trust verify --bundle a.sigstore.json --certificate-identity I\n"
        "      --certificate-oidc-issuer U a.txt\n\n"
        "  trust demo\n\n"
        "Exit codes: 0 ok, 1 operation failed, 2 usage, 3 trust not usable."
    ),
)

# Every top-level word, in `trust --help` order: (module under stella_trust._cli, attribute,
# whether it is a sub-app). Importing a module is deferred until its command is wanted.
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "init": ("client", "init", False),
    "sync": ("client", "sync", False),
    "status": ("client", "status", False),
    "export": ("bundles", "export_command", False),
    "import": ("importing", "import_command", False),
    "verify": ("verify", "verify", False),
    "snapshot": ("bundles", "snapshot_app", True),
    "agent": ("agent", "agent", False),
    "demo": ("demo", "demo", False),
    "get": ("query", "get", False),
    "keys": ("query", "keys", False),
    "diff": ("query", "diff", False),
    "doctor": ("doctor", "doctor", False),
    "config": ("doctor", "config_app", True),
    "repo": ("repo", "repo_app", True),
}


def _version(value: bool) -> None:
    """The eager `--version` callback: prints and exits before any command runs or any config is
    read."""
    if value:
        from stella_trust._version import __version__

        typer.echo(f"stella-trust {__version__}")
        raise typer.Exit()


def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (default: $STELLA_TRUST_CONFIG, /etc/stella-trust/trust.yaml as "
            "root, else the user config dir).",
            readable=False,
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        # readable=False: a reader outside the cache's group gets our one line naming the group
        typer.Option("--cache-dir", help="Cache directory (overrides local_cache_path).", readable=False),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Print the traceback of an internal error, the agent's debug log lines and "
            "each stage of a bundle import or export (or STELLA_DEBUG=1).",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """The global options, remembered for the command that runs (`remember_globals`); no settings
    are read here, so `--help` and `--version` stay cheap."""
    ctx.obj = remember_globals(Globals(config, cache_dir, debug))


def build_app(only: str | None = None, *, completion: bool = True) -> typer.Typer:
    """The `trust` app with every command, or with only the top-level word `only` (a
    command, or a group with all its subcommands) next to the global options. `completion`
    False leaves out `--install-completion` and `--show-completion` (a run that names neither:
    typer validates each option's value, even an absent one, at every run; issue 24)."""
    app = typer.Typer(**{**_APP_OPTIONS, "add_completion": completion})
    app.callback()(main_options)
    for name, (module, attribute, group) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(f"stella_trust._cli.{module}"), attribute)
        if group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


_FULL: list[typer.Typer] = []


def full_app() -> typer.Typer:
    """The whole command tree, built once."""
    if not _FULL:
        _FULL.append(build_app())
    return _FULL[0]


def __getattr__(name: str) -> Any:
    """`app` is `full_app()`: importing this module builds no command."""
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point; the last resort against a traceback reaching a user. A usage
    error (unknown option, bad value) under `--json` still prints the envelope. As the process's
    own entry point (`argv` None) it also ends the process without CPython's final collection
    (`_exit_without_collection`)."""
    try:
        _main(argv)
    finally:
        if argv is None:
            _exit_without_collection()


def _exit_without_collection() -> None:
    """Freeze every object before the interpreter shuts down, so its final cyclic collection has
    nothing to walk and frees no cycle object by object: memory the kernel takes back whole an
    instant later. That collection is most of a `trust` run's exit: ~50 ms of every
    `trust status`, paid for the modules of pydantic, cryptography, typer and python-tuf (issue
    24; a bare `python -c "import ..."` of the same modules pays it too). Everything else of the
    shutdown still happens: atexit handlers, logging's flush, stdout and stderr flushed, objects
    outside cycles freed as their modules are cleared. What is not done is finalizing objects that
    only a collection would free; nothing in `trust` writes through one (files are written by
    fs.atomic_write, closed and fsynced, before a command returns). Only the entry point does this:
    `main([...])` called in a process that goes on (tests) leaves the collector as it was."""
    import gc

    gc.freeze()


def _main(argv: list[str] | None) -> None:
    """`main`'s body."""
    from stella_trust._cli.options import name_command

    # pydantic scans every installed distribution's entry points for plugins when it builds
    # its first validator; the `trust` command uses none. Only this entry point sets it (a
    # value already set is kept); a process that calls `open_trust()` is left alone.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    args = argv if argv is not None else sys.argv[1:]
    words = command_words(args)
    name_command(words)
    first = words.split(" ")[0]
    completing = "_TRUST_COMPLETE" in os.environ  # completion reads its words elsewhere
    only = first if first in COMMANDS and not completing else None
    # the completion options (or a near miss, whose error suggests them) get the whole app
    asked = any("complet" in arg or arg.startswith("--install") for arg in args)
    command = typer.main.get_command(build_app(only, completion=False) if only and not asked else full_app())
    readable_metavars(command)
    try:
        code = command.main(args=args, prog_name="trust", standalone_mode=False)
    except typer.exceptions.TyperException as exc:  # typer's click: usage errors, bad values
        exit_code = int(getattr(exc, "exit_code", 2))
        if "--json" in args:
            _usage_envelope(args, str(getattr(exc, "format_message", exc.__str__)()), exit_code)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(exit_code)
    except (KeyboardInterrupt, typer.Abort):
        if "--json" in args:
            _usage_envelope(args, "interrupted", 130, hint="cached trust is unchanged")
        typer.echo("interrupted; cached trust is unchanged", err=True)
        sys.exit(130)
    except Exception as exc:
        error = internal_error(exc)
        typer.echo(f"error: {error.message}", err=True)
        typer.echo(f"hint: {INTERNAL_HINT}", err=True)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def readable_metavars(command: object) -> None:
    """Full one-line summaries in `trust --help`, and `--pin PIN`, `--root PATH`, `BUNDLE`
    instead of typer's `<list[str]>`, `<path>`, `{bundle}`; set once per process."""
    for param in getattr(command, "params", []):
        if param.__class__.__name__.endswith("Argument"):
            param.display_type_rich = lambda ctx: None  # `ROLE`, not `ROLE <str>`
        if getattr(param, "metavar", None) is not None or getattr(param, "is_flag", False):
            continue
        if getattr(param, "count", False) or getattr(param, "hidden", False):
            continue
        descriptor = getattr(param, "type_descriptor", None)
        annotation = getattr(descriptor, "annotation", None)
        name = str(getattr(param, "name", "value") or "value")
        if param.__class__.__name__.endswith("Argument"):
            param.metavar = name.upper()
        elif getattr(descriptor, "is_path", False):
            param.metavar = "PATH"
        elif annotation is int:
            param.metavar = "N"
        else:
            param.metavar = name.removeprefix("as_").upper()
    for sub in getattr(command, "commands", {}).values():
        if getattr(sub, "short_help", None) is None and getattr(sub, "help", None):
            # the whole first line in `trust --help`, wrapped, never cut with "..."
            sub.short_help = " ".join(str(sub.help).strip().split("\n\n")[0].split())
        readable_metavars(sub)


def _usage_envelope(args: list[str], message: str, code: int, hint: str | None = None) -> None:
    """A usage error under `--json`, in the one envelope shape: typer refuses the arguments before
    any command's envelope exists, and a script must still get one object on stdout."""
    import json

    name = command_words(args)
    document = {
        "command": name,
        "ok": False,
        "result": None,
        "warnings": [],
        "error": {"message": message, "hint": hint or f"see `trust {name} --help`", "exit_code": code},
    }
    typer.echo(json.dumps(document, indent=2))
