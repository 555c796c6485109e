"""The `trust` command: parse, call the core, render. No trust logic lives here.

Heavy modules (python-tuf's client, httpx, cryptography, rich) are imported inside the
commands that need them so `trust --help` and `trust status` start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust import __version__
from stella_trust.errors import EXIT_UNUSABLE, StellaError
from stella_trust.errors import UsageError as StellaUsage

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
        "  trust demo\n\n"
        "Exit codes: 0 ok, 1 operation failed, 2 usage, 3 trust not usable."
    ),
)


@dataclass
class Globals:
    config: Path | None
    cache_dir: Path | None


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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = Globals(config, cache_dir)


def _globals(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    assert isinstance(obj, Globals)
    return obj


def _config_path(ctx: typer.Context) -> Path:
    from stella_trust.settings import default_config_path

    return _globals(ctx).config or default_config_path()


def _settings(ctx: typer.Context, **flags: Any) -> Any:
    from stella_trust.settings import load_settings

    g = _globals(ctx)
    if g.cache_dir is not None:
        flags["local_cache_path"] = g.cache_dir
    return load_settings(_config_path(ctx), flags)


def fail(error: StellaError, as_json: bool) -> None:
    """One clear line and a hint on stderr (and an object on stdout for --json); then exit."""
    if as_json:
        typer.echo(json.dumps({"error": error.message, "hint": error.hint, "exit_code": error.exit_code}))
    typer.echo(f"error: {error.message}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)
    raise typer.Exit(error.exit_code)


@contextmanager
def reported(as_json: bool = False) -> Iterator[None]:
    try:
        yield
    except StellaError as error:
        fail(error, as_json)
    except KeyboardInterrupt:
        typer.echo("interrupted; cached trust is unchanged", err=True)
        raise typer.Exit(130) from None


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def duration_option(text: str | None, flag: str) -> Any:
    """A `7d`/`36h`/`90m` option as a timedelta (None stays None); a usage error otherwise."""
    from stella_trust.trust import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise StellaUsage(f"{flag}: {exc}") from exc


def _split_pins(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
def init(
    ctx: typer.Context,
    tuf_url: Annotated[str | None, typer.Option("--tuf-url", help="Repository base URL.")] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Trusted root.json obtained out of band.")
    ] = None,
    root_sha256: Annotated[
        str | None, typer.Option("--root-sha256", help="Download 1.root.json; require this digest.")
    ] = None,
    trust_on_first_use: Annotated[
        bool, typer.Option("--trust-on-first-use", help="Trust whatever root is served (labs only).")
    ] = False,
    service_map: Annotated[str | None, typer.Option("--service-map", help="Service map target name.")] = None,
    pin: Annotated[
        list[str] | None,
        typer.Option("--pin", help="Target to keep (repeatable, comma lists allowed)."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", help="Service map override set, e.g. staging.")
    ] = None,
    offline: Annotated[
        bool | None, typer.Option("--offline/--online", help="Record offline mode (no network).")
    ] = None,
    no_sync: Annotated[bool, typer.Option("--no-sync", help="Do not run the first sync.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a different trust anchor already cached.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Store the trust anchor, write the config section, then run a first sync.

    Examples:

      trust init --tuf-url https://tuf.example --root ./1.root.json

      trust init --tuf-url https://tuf.example --root-sha256 9f86d0...  --pin rekor-key-v2

      trust init --tuf-url file:///media/usb/trust-bundle --offline --root ./root.json
    """
    from stella_trust.anchor import initialise

    g = _globals(ctx)
    flags: dict[str, Any] = {
        "tuf_url": tuf_url,
        "service_map_target": service_map,
        "pinned_targets": _split_pins(pin),
        "environment": environment,
        "offline_mode": offline,
        "local_cache_path": g.cache_dir,
    }
    with reported(as_json):
        settings, anchor = initialise(
            _config_path(ctx),
            flags,
            root_file=root,
            root_sha256=root_sha256,
            trust_on_first_use=trust_on_first_use,
            force=force,
        )
        if anchor.how == "tofu":
            typer.echo(
                "WARNING: trusting the root the repository served (trust on first use).\n"
                f"WARNING: root v{anchor.version} sha256 {anchor.sha256} — verify it out of band.",
                err=True,
            )
        summary: dict[str, Any] = {
            "config": str(_config_path(ctx)),
            "cache": str(settings.local_cache_path),
            "root_version": anchor.version,
            "root_sha256": anchor.sha256,
            "anchor": anchor.how,
        }
        if not as_json:
            typer.echo(
                f"initialised {settings.local_cache_path}: trusting root v{anchor.version} "
                f"(sha256 {anchor.sha256}); config {_config_path(ctx)}"
            )
        if not no_sync:
            result = _run_sync(settings, force=False)
            summary["sync"] = result.to_json()
            if not as_json:
                _print_sync(result)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))


def _run_sync(settings: Any, force: bool) -> Any:
    from stella_trust.store import Store
    from stella_trust.sync import sync as run_sync

    return run_sync(settings, Store(settings.local_cache_path), force=force)


def _print_sync(result: Any) -> None:
    versions = " ".join(f"{role} v{version}" for role, version in result.versions.items())
    what = "updated" if result.changed else "up to date"
    typer.echo(
        f"sync: {what} ({versions}); {result.requests} requests, "
        f"{len(result.downloaded)} targets downloaded, {result.seconds:.2f}s"
    )


@app.command()
def sync(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Re-download and re-verify all metadata and targets.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Refresh trust from the repository (idle: two requests, nothing re-downloaded).

    Any failure leaves the previous trust untouched and usable.

    Examples:

      trust sync

      trust sync --force --json
    """
    with reported(as_json):
        result = _run_sync(_settings(ctx), force)
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
        else:
            _print_sync(result)


@app.command()
def status(
    ctx: typer.Context,
    show_keys: Annotated[
        bool, typer.Option("--show-keys", help="List public keys and certificates.")
    ] = False,
    show_endpoints: Annotated[
        bool, typer.Option("--show-endpoints", help="List Rekor/Fulcio URLs after overrides.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-verify the cache offline and report freshness, versions, keys and endpoints.

    Exit code 0 when fresh or in grace, 3 when stale, not initialised or tampered.

    Examples:

      trust status

      trust status --show-keys --show-endpoints

      trust status --json | jq .freshness.state
    """
    from stella_trust.api import load_view
    from stella_trust.render import render_status
    from stella_trust.store import Store

    with reported(as_json):
        settings = _settings(ctx)
        store = Store(settings.local_cache_path)
        try:
            view = load_view(settings, store)
        except StellaError as error:
            if error.exit_code == 1:  # a cache that cannot be served is "trust not usable"
                error.exit_code = EXIT_UNUSABLE
            raise
        if as_json:
            typer.echo(json.dumps(view.to_json(), indent=2))
        else:
            typer.echo(render_status(view, show_keys=show_keys, show_endpoints=show_endpoints))
        if view.freshness.state == "grace":
            typer.echo(
                f"warning: signed metadata expired at {view.to_json()['freshness']['expires']}; "
                f"trust stays usable until {view.to_json()['freshness']['stale_after']}",
                err=True,
            )
        if not view.usable:
            typer.echo("error: trust is stale and must not be used", err=True)
            typer.echo("hint: run `trust sync` or import a fresh bundle", err=True)
            raise typer.Exit(EXIT_UNUSABLE)


def _register_repo_commands() -> None:
    from stella_trust.cli_repo import repo_app

    app.add_typer(repo_app, name="repo")


_register_repo_commands()

snapshot_app = typer.Typer(
    help="Sealed .tar.zst snapshots of the trust for air-gapped hosts.", no_args_is_help=True
)
app.add_typer(snapshot_app, name="snapshot")


def _progress(total_hint: int) -> Any:
    """A rich progress bar when a person is watching a large transfer, else nothing."""
    from stella_trust.progress import transfer_progress

    return transfer_progress(total_hint)


def _print_bundle(summary: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2))
    else:
        versions = " ".join(f"{role} v{v}" for role, v in summary.versions.items())
        outcome = "" if summary.changed else "no change, this host already holds that trust; "
        typer.echo(
            f"{summary.action}: {summary.path}: {outcome}{summary.files} files, {summary.bytes} "
            f"bytes ({versions}); freshness {summary.freshness.state}"
        )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)


@app.command("export")
def export_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory to write (created or replaced).")],
    as_json: JsonOption = False,
) -> None:
    """Write the verified trust as a directory that is itself a file:// TUF repository.

    Carry it across the air gap, then on the other host:

      trust init --tuf-url file:///media/usb/trust-bundle --offline --root ./root.json
    """
    from stella_trust.bundle import export_directory
    from stella_trust.store import Store

    with reported(as_json):
        settings = _settings(ctx)
        store = Store(settings.local_cache_path)
        with _progress(_cache_bytes(store)) as advance:
            summary = export_directory(settings, store, out, progress=advance)
        _print_bundle(summary, as_json)


def _cache_bytes(store: Any) -> int:
    current = store.current()
    if current is None:
        return 0
    return sum(p.stat().st_size for p in current.path.rglob("*") if p.is_file())


@snapshot_app.command("export")
def snapshot_export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Bundle file to write, e.g. 2026-01-25.tar.zst.")],
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            min=0,
            help="Transparency-log depth. Recorded in the manifest only: the log tiles it "
            "will select are not carried yet (a later release adds them).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Seal the verified trust into a zstd-compressed tar (manifest.json first).

    Examples:

      trust snapshot export --out ./snapshots/2026-01-25.tar.zst

      trust snapshot export --out /media/usb/trust.tar.zst --json
    """
    from stella_trust.bundle import export_archive
    from stella_trust.store import Store

    with reported(as_json):
        settings = _settings(ctx)
        store = Store(settings.local_cache_path)
        with _progress(_cache_bytes(store)) as advance:
            summary = export_archive(settings, store, out, depth=depth, progress=advance)
        _print_bundle(summary, as_json)


@app.command("import")
def import_command(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="A .tar.zst made by `trust snapshot export`.")],
    verify_manifest: Annotated[
        bool,
        typer.Option("--verify-manifest", help="Check every file against the manifest first."),
    ] = False,
    reject_if_stale: Annotated[
        str | None,
        typer.Option(
            "--reject-if-stale",
            metavar="DURATION",
            help="Refuse a bundle whose signed expiry lies more than DURATION (7d, 36h, 90m) in the past.",
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="State that no network may be used (import never does)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify a bundle from this host's own trust anchor and make it the current trust.

    The bundle is untrusted input: it adds trust only if it verifies from the anchor,
    never rolls back, and a failure changes nothing. Import never uses the network.

    Examples:

      trust import ./snapshots/2026-01-25.tar.zst --verify-manifest --reject-if-stale 7d

      trust import /media/usb/trust.tar.zst --offline --json
    """
    from stella_trust.bundle import import_bundle
    from stella_trust.store import Store
    with reported(as_json):
        window = duration_option(reject_if_stale, "--reject-if-stale")
        settings = _settings(ctx, **({"offline_mode": True} if offline else {}))
        store = Store(settings.local_cache_path)
        size = bundle.stat().st_size if bundle.is_file() else 0
        with _progress(size * 3) as advance:
            summary = import_bundle(
                settings,
                store,
                bundle,
                verify_manifest=verify_manifest,
                reject_if_stale=window,
                progress=advance,
            )
        _print_bundle(summary, as_json)


@app.command()
def agent(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="One cycle, then exit with sync's exit code (timers, cron).")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="auto (journal under systemd, else text), text, journal or json.",
        ),
    ] = "auto",
) -> None:
    """Keep trust current: refresh every refresh_interval_minutes (with jitter).

    Failures back off (retry_initial_seconds, doubling, capped at the interval) while the
    cached trust keeps being served. Signals: SIGTERM/SIGINT stop, SIGHUP reloads the
    config (a bad one is reported and the old one kept), SIGUSR1 refreshes now.
    Speaks sd_notify (READY, STATUS, WATCHDOG, STOPPING) under systemd.

    Examples:

      trust agent

      trust agent --once            # for stella-trust-sync.timer or cron

      trust agent --log-format json
    """
    from stella_trust.agent import Agent
    from stella_trust.logs import configure

    if log_format not in ("auto", "text", "journal", "json"):
        fail(StellaUsage(f"--log-format must be auto, text, journal or json, not {log_format!r}"), False)
    logger = configure(log_format)
    with reported():
        runner = Agent(lambda: _settings(ctx), logger=logger)
        if once:
            raise typer.Exit(runner.run_once())
        runner.install_signal_handlers()
        raise typer.Exit(runner.run())


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary directory for inspection.")
    ] = False,
) -> None:
    """Build a demo repository, serve it on 127.0.0.1, then init -> sync -> status.

    Everything happens in a temporary directory with a throwaway config and cache;
    nothing on this host is touched and no network beyond loopback is used.
    """
    from stella_trust.demo import run_demo

    with reported():
        raise typer.Exit(run_demo(keep=keep))


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    command = typer.main.get_command(app)
    command.main(args=argv if argv is not None else sys.argv[1:], prog_name="trust")
