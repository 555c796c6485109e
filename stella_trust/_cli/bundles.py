"""Air-gapped hosts: `trust export`, `trust snapshot export`, `trust snapshot inspect`,
`trust import`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import (
    InstanceOption,
    JsonOption,
    instances_of,
    load,
    reported,
    several,
)
from stella_trust._cli.progress import QuietOption, bundle_progress
from stella_trust.errors import StellaError, UsageError

if TYPE_CHECKING:
    from stella_trust._internal.bundle.inspection import Inspection

snapshot_app = typer.Typer(
    help="Sealed .tar.zst snapshots of the trust for air-gapped hosts.",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n"
        "  trust snapshot export --out /media/usb/trust-2026-01-25.tar.zst\n\n"
        "  trust snapshot inspect /media/usb/trust-2026-01-25.tar.zst\n\n"
        "  trust import /media/usb/trust-2026-01-25.tar.zst\n\n"
        "Each subcommand's --help has more examples."
    ),
)


def carried(files: int, size: int) -> str:
    """What a bundle carries, said the same way by `snapshot export`, `snapshot inspect`,
    `export` and `import`: the files its manifest lists (metadata, targets, log tiles) and
    their bytes; manifest.json itself is not counted by any of them."""
    return f"{files} files, {size} bytes besides manifest.json"


def print_bundle(summary: Any, env: Envelope) -> None:
    """One line for an import or export, said the same way by both (`carried`), then each sealed log
    it carried and its warnings."""
    env.result = summary.to_json()
    versions = " ".join(f"{role} v{v}" for role, v in summary.versions.items())
    outcome = "" if summary.changed else "no change, this host already holds that trust; "
    env.say(
        f"{summary.action}: {summary.path}: {outcome}{carried(summary.files, summary.bytes)} "
        f"({versions}); freshness {summary.freshness.state}"
    )
    for log in summary.sealed_logs:
        env.say(
            f"  sealed log {log['origin']}: tree size {log['tree_size']}, last {log['depth']} entries "
            f"({log['tiles']} tiles)"
        )
    for name, part in summary.instances.items():
        versions = " ".join(f"{role} v{v}" for role, v in part["versions"].items())
        env.say(f"  instance {name}: {versions}; freshness {part['freshness']['state']}")
    for warning in summary.warnings:
        env.warn(warning)


def _parts(ctx: typer.Context) -> list[Any] | None:
    """Every instance's (name, settings, store) when the bundle is to carry several (no
    --instance on a host with more than one); None: a one-instance bundle, as before."""
    from stella_trust._internal.store import Store

    if not several(ctx):
        return None
    parts = []
    for name in instances_of(ctx):
        settings = load(ctx, name)
        parts.append((name, settings, Store.of(settings)))
    return parts


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
    quiet: QuietOption = False,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the verified trust for another host or another verifier.

    Built only from re-verified cache content. trusted-root and client-trust-config refuse
    stale trust (exit 3); a tuf-repository export of stale trust warns (the importing host
    judges freshness itself).

    Examples:

      trust export --out /media/usb/trust-bundle      # then, across the air gap:
      trust import /media/usb/trust-bundle            # on an initialised host, or:
      trust init --tuf-url file:///media/usb/trust-bundle --offline --root ./root.json

      trust export --format trusted-root --out trusted_root.json
      cosign verify-blob --trusted-root trusted_root.json --bundle a.sigstore.json
      --certificate-identity ci@example.com --certificate-oidc-issuer https://accounts.google.com a.txt

      trust export --format client-trust-config --out trust_config.json
      sigstore --trust-config trust_config.json verify identity --offline --bundle a.sigstore.json
      --cert-identity ci@example.com --cert-oidc-issuer https://accounts.google.com a.txt
    """
    from stella_trust._internal.store import Store

    with reported(as_json) as env:
        if fmt not in ("tuf-repository", "trusted-root", "client-trust-config"):
            raise UsageError(
                f"--format must be tuf-repository, trusted-root or client-trust-config, not {fmt!r}"
            )
        settings = load(ctx)
        store = Store.of(settings)
        if fmt != "tuf-repository":
            _export_trust_file(settings, store, fmt, out, env)
            return
        from stella_trust._internal.bundle.export import export_directory, export_instances

        parts = _parts(ctx)
        with bundle_progress(f"export {out.name}", quiet or as_json) as progress:
            if parts is not None:
                summary = export_instances(parts, out, sealed=False, progress=progress)
            else:
                summary = export_directory(settings, store, out, progress=progress)
        print_bundle(summary, env)


def _export_trust_file(settings: Any, store: Any, fmt: str, out: Path, env: Envelope) -> None:
    """`export --format trusted-root|client-trust-config`: the file a Sigstore verifier reads, made
    from the re-verified view only and refused when stale (decision 7), written atomically so a
    verifier never reads half a file."""
    from stella_trust._internal.fs import write_output
    from stella_trust._internal.reader import load_view
    from stella_trust._internal.verifiers import trust_file

    view = load_view(settings, store)
    data = trust_file(view, fmt)
    write_output(out.absolute(), data)  # a link at OUT is replaced, never written through
    env.result = {
        "format": fmt,
        "path": str(out),
        "bytes": len(data),
        "sources": list(view.sources),
        "freshness": view.freshness.to_json(),
    }
    env.say(
        f"export: {out}: {fmt}, {len(data)} bytes (from {', '.join(view.sources)} trust; "
        f"freshness {view.freshness.state})"
    )


@snapshot_app.command("export")
def snapshot_export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Bundle file to write, e.g. 2026-01-25.tar.zst.")],
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            min=0,
            help="Carry the last N entries of every active tile-based transparency log "
            "(Rekor v2): its signed checkpoint and the C2SP tiles covering those entries and "
            "the tree's right edge, verified with the log's key before sealing. 0 (default) "
            "carries none; Rekor v1 logs are skipped with a note.",
        ),
    ] = None,
    quiet: QuietOption = False,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Seal the verified trust into a zstd-compressed tar (manifest.json first).

    Examples:

      trust snapshot export --out ./snapshots/2026-01-25.tar.zst

      trust snapshot export --out /media/usb/trust.tar.zst --json

      trust snapshot export --out ./snapshots/2026-01-25.tar.zst --depth 10000
    """
    from stella_trust._internal.bundle.export import export_archive, export_instances
    from stella_trust._internal.store import Store

    with reported(as_json) as env:
        parts = _parts(ctx)
        with bundle_progress(f"export {out.name}", quiet or as_json) as progress:
            if parts is not None:
                summary = export_instances(parts, out, sealed=True, depth=depth, progress=progress)
            else:
                settings = load(ctx)
                summary = export_archive(settings, Store.of(settings), out, depth=depth, progress=progress)
        print_bundle(summary, env)


@snapshot_app.command("inspect")
def snapshot_inspect(
    ctx: typer.Context,
    bundle: Annotated[
        Path,
        typer.Argument(
            help="A .tar.zst made by `trust snapshot export` (or a directory made by `trust export`)."
        ),
    ],
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Only list the bundle and check it against its manifest; do not ask whether "
            "this host would import it.",
        ),
    ] = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show what a bundle holds without importing it: manifest, files, whether it would import.

    The bundle is read as hostile input, with import's limits, into a temporary directory
    that is removed afterwards; the cache is never written. Every file is hashed and
    compared with the manifest: a mismatch is exit 1, a hostile archive is refused in one
    line. On an initialised host the bundle is then verified exactly as `trust import`
    would (from this host's trust anchor, no rollback, not stale): exit 1 if import would
    refuse it. The manifest's dates and role versions are unsigned, for information.

    Examples:

      trust snapshot inspect /media/usb/trust-2026-11-22.tar.zst

      trust snapshot inspect trust.tar.zst --json | jq .result.manifest

      trust snapshot inspect /media/usb/trust-bundle --no-verify
    """
    from stella_trust._internal.bundle.inspection import inspect_bundle
    from stella_trust._internal.settings import BundleLimits
    from stella_trust._internal.store import Store

    with reported(as_json) as env:
        host: Any = None
        skipped = "--no-verify"
        limits = BundleLimits()
        try:
            settings = load(ctx)
        except StellaError as exc:  # no usable config: the bundle is still read, with default limits
            skipped = f"this host's settings cannot be read ({exc.message})"
        else:
            limits = settings.bundle_limits
            if not no_verify:
                host = (settings, Store.of(settings))
        with bundle_progress(f"inspect {bundle.name}", quiet or as_json) as progress:
            inspection = inspect_bundle(bundle, limits, host=host, skipped=skipped, progress=progress)
        env.result = inspection.to_json()
        env.say(_render_inspection(inspection))
        if inspection.problems:
            more = len(inspection.problems) - 1
            env.fail(
                StellaError(
                    inspection.problems[0] + (f" (and {more} more)" if more else ""),
                    hint="the bundle was changed after it was exported; do not import it",
                )
            )
        verification = inspection.verification
        for warning in verification.warnings:
            env.warn(warning)
        if verification.error is not None:
            error = verification.error
            env.fail(
                StellaError(
                    f"this host would refuse the bundle: {error.message}",
                    hint=error.hint,
                    exit_code=error.exit_code,
                )
            )


def _safe(value: Any, limit: int = 100) -> str:
    """Unsigned text from a bundle's manifest, safe to print on a terminal."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _render_inspection(inspection: Inspection) -> str:
    """`snapshot inspect` in words. The manifest is unsigned: its fields are said as its claims and
    made safe to print (`_safe`), apart from what this host checked itself (the files against the
    manifest, the verification from its own anchor)."""
    manifest = inspection.manifest
    depth = manifest.get("depth")
    kind = "sealed archive" if inspection.kind == "archive" else "export directory"
    lines = [
        f"bundle: {inspection.path} ({kind}, {inspection.bytes} bytes; "
        f"manifest sha256 {inspection.manifest_sha256[:16]}…)",
        f"created: {_safe(manifest.get('created_at'))} by stella-trust {_safe(manifest.get('tool_version'))}"
        f" (unsigned); depth {'not set' if depth is None else _safe(depth)}",
    ]
    source = manifest.get("source")
    if isinstance(source, dict) and source.get("tuf_url"):
        lines.append(f"source: {_safe(source['tuf_url'])}")
    roles = manifest.get("roles")
    if isinstance(roles, dict) and roles:
        listed = []
        for role, info in roles.items():
            version = info.get("version") if isinstance(info, dict) else None
            expires = info.get("expires") if isinstance(info, dict) else None
            listed.append(f"{_safe(role, 40)} v{_safe(version, 12)} (expires {_safe(expires, 30)})")
        lines.append(f"roles (as the manifest lists them): {', '.join(listed)}")
    tiles = manifest.get("tiles")
    for log in tiles if isinstance(tiles, list) else []:
        if isinstance(log, dict):
            lines.append(
                f"sealed log (as the manifest lists it): {_safe(log.get('origin'), 80)} tree size "
                f"{_safe(log.get('tree_size'), 24)}, last {_safe(log.get('depth'), 24)} entries"
            )
    for log in inspection.verification.sealed_logs:
        lines.append(
            f"sealed log verified with this host's trust: {log['origin']} tree size {log['tree_size']}, "
            f"root {log['root_hash'][:16]}…, last {log['depth']} entries"
        )
    total = sum(f.length for f in inspection.files)
    verdict = "all match the manifest" if inspection.intact else f"{len(inspection.problems)} do NOT match"
    lines.append(f"files: {carried(len(inspection.files), total)}; {verdict}")
    width = max((len(str(f.length)) for f in inspection.files), default=1)
    for entry in inspection.files:
        state = {"ok": "ok", "mismatch": "MISMATCH", "missing": "MISSING"}[entry.state]
        digest = _safe(entry.sha256, 64)[:12]
        lines.append(f"  {state:<8}  {entry.length:>{width}}  {digest}  {_safe(entry.path, 200)}")
    verification = inspection.verification
    if verification.status == "verified":
        versions = " ".join(f"{role} v{v}" for role, v in (verification.versions or {}).items())
        change = "changes this host's trust" if verification.changed else "this host already holds it"
        freshness = verification.freshness.state if verification.freshness is not None else None
        lines.append(
            f"verification: verifies from this host's trust anchor ({versions}); freshness {freshness}; "
            f"import would succeed ({change})"
        )
    elif verification.status == "skipped":
        lines.append(f"verification: not checked ({verification.message})")
    else:
        lines.append(f"verification: REFUSED: {verification.message}")
    return "\n".join(lines)
