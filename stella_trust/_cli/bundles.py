"""Air-gapped hosts: `trust export`, `trust snapshot export`, `trust import`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust._cli.options import JsonOption, duration_option, load, reported
from stella_trust.errors import UsageError

snapshot_app = typer.Typer(
    help="Sealed .tar.zst snapshots of the trust for air-gapped hosts.", no_args_is_help=True
)


def _progress(total_hint: int) -> Any:
    """A rich progress bar when a person is watching a large transfer, else nothing."""
    from stella_trust._cli.progress import transfer_progress

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


def export_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory or file to write (replaced atomically).")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="tuf-repository|trusted-root|client-trust-config",
            help="tuf-repository: a directory that is a file:// TUF repository (default); "
            "trusted-root: trusted_root.json for cosign --trusted-root and sigstore-go; "
            "client-trust-config: for sigstore-python --trust-config.",
        ),
    ] = "tuf-repository",
    as_json: JsonOption = False,
) -> None:
    """Write the verified trust for another host or another verifier.

    Built only from re-verified cache content. trusted-root and client-trust-config refuse
    stale trust (exit 3); a tuf-repository export of stale trust warns (the importing host
    judges freshness itself).

    Examples:

      trust export --out /media/usb/trust-bundle      # then, across the air gap:
      trust init --tuf-url file:///media/usb/trust-bundle --offline --root ./root.json

      trust export --format trusted-root --out trusted_root.json
      cosign verify-blob --trusted-root trusted_root.json --bundle a.sigstore.json ...

      trust export --format client-trust-config --out trust_config.json
      sigstore --trust-config trust_config.json verify identity --offline ...
    """
    from stella_trust._internal.store import Store

    with reported(as_json):
        if fmt not in ("tuf-repository", "trusted-root", "client-trust-config"):
            raise UsageError(
                f"--format must be tuf-repository, trusted-root or client-trust-config, not {fmt!r}"
            )
        settings = load(ctx)
        store = Store.of(settings)
        if fmt != "tuf-repository":
            _export_trust_file(settings, store, fmt, out, as_json)
            return
        from stella_trust._internal.bundle.export import export_directory

        with _progress(_cache_bytes(store)) as advance:
            summary = export_directory(settings, store, out, progress=advance)
        _print_bundle(summary, as_json)


def _export_trust_file(settings: Any, store: Any, fmt: str, out: Path, as_json: bool) -> None:
    from stella_trust._internal.fs import atomic_write
    from stella_trust._internal.reader import load_view
    from stella_trust._internal.verifiers import trust_file

    view = load_view(settings, store)
    data = trust_file(view, fmt)
    atomic_write(out.resolve(), data)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "format": fmt,
                    "path": str(out),
                    "bytes": len(data),
                    "sources": list(view.sources),
                    "freshness": view.freshness.to_json(),
                },
                indent=2,
            )
        )
    else:
        typer.echo(
            f"export: {out}: {fmt}, {len(data)} bytes (from {', '.join(view.sources)} trust; "
            f"freshness {view.freshness.state})"
        )


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
    from stella_trust._internal.bundle.export import export_archive
    from stella_trust._internal.store import Store

    with reported(as_json):
        settings = load(ctx)
        store = Store.of(settings)
        with _progress(_cache_bytes(store)) as advance:
            summary = export_archive(settings, store, out, depth=depth, progress=advance)
        _print_bundle(summary, as_json)


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
    from stella_trust._internal.bundle.importer import import_bundle
    from stella_trust._internal.store import Store

    with reported(as_json):
        window = duration_option(reject_if_stale, "--reject-if-stale")
        settings = load(ctx, **({"offline_mode": True} if offline else {}))
        store = Store.of(settings)
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
