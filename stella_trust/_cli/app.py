"""The `trust` command: one typer app, one module per command group, no trust logic.

Heavy modules (python-tuf's client, httpx, cryptography, rich) are imported inside the
commands that need them so `trust --help` and `trust status` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from stella_trust._cli import agent, bundles, client, demo, verify
from stella_trust._cli.options import INTERNAL_HINT, Globals, internal_error
from stella_trust._cli.repo import repo_app
from stella_trust._version import __version__

app = typer.Typer(
    name="trust",
    help="Keep this host's Sigstore trust material current from a TUF repository.",
    rich_markup_mode=None,  # plain help: importing rich would double `trust --help` start-up
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
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
app.add_typer(repo_app, name="repo")


def main(argv: list[str] | None = None) -> None:
    """Console entry point; the last resort against a traceback reaching a user."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv if argv is not None else sys.argv[1:], prog_name="trust")
    except KeyboardInterrupt:
        typer.echo("interrupted; cached trust is unchanged", err=True)
        sys.exit(130)
    except Exception as exc:
        error = internal_error(exc)
        typer.echo(f"error: {error.message}", err=True)
        typer.echo(f"hint: {INTERNAL_HINT}", err=True)
        sys.exit(error.exit_code)
