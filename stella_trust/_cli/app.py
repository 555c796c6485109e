"""The `trust` command: one typer app, one module per command group, no trust logic.

Heavy modules (python-tuf's client, httpx, cryptography, rich) are imported inside the
commands that need them so `trust --help` and `trust status` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from stella_trust._cli import agent, bundles, client, demo, doctor, query, verify
from stella_trust._cli.options import INTERNAL_HINT, Globals, internal_error
from stella_trust._cli.repo import repo_app
from stella_trust._version import __version__

app = typer.Typer(
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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stella-trust {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (default: $STELLA_TRUST_CONFIG, /etc/stella-trust/trust.yaml as "
            "root, else the user config dir).",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Cache directory (overrides local_cache_path).")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an internal error (or STELLA_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = Globals(config, cache_dir, debug)


app.command()(client.init)
app.command()(client.sync)
app.command()(client.status)
app.command("export")(bundles.export_command)
app.command("import")(bundles.import_command)
app.command()(verify.verify)
app.add_typer(bundles.snapshot_app, name="snapshot")
app.command()(agent.agent)
app.command()(demo.demo)
app.command()(query.get)
app.command()(query.keys)
app.command()(query.diff)
app.command()(doctor.doctor)
app.add_typer(doctor.config_app, name="config")
app.add_typer(repo_app, name="repo")


def main(argv: list[str] | None = None) -> None:
    """Console entry point; the last resort against a traceback reaching a user. A usage
    error (unknown option, bad value) under `--json` still prints the envelope."""
    from stella_trust._cli.options import name_command

    args = argv if argv is not None else sys.argv[1:]
    name_command(_command_words(args))
    command = typer.main.get_command(app)
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


GROUPS = ("repo", "snapshot", "config", "root")


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


def _command_words(args: list[str]) -> str:
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


def _usage_envelope(args: list[str], message: str, code: int, hint: str | None = None) -> None:
    import json

    name = _command_words(args)
    document = {
        "command": name,
        "ok": False,
        "result": None,
        "warnings": [],
        "error": {"message": message, "hint": hint or f"see `trust {name} --help`", "exit_code": code},
    }
    typer.echo(json.dumps(document, indent=2))
