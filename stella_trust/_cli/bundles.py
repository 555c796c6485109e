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
    config_path,
    duration_option,
    fail,
    globals_of,
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


def _print_bundle(summary: Any, env: Envelope) -> None:
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
        _print_bundle(summary, env)


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
        _print_bundle(summary, env)


def import_command(
    ctx: typer.Context,
    bundle: Annotated[
        Path,
        typer.Argument(
            help="A .tar.zst made by `trust snapshot export`, or a directory made by `trust export`."
        ),
    ],
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
    add_instance: Annotated[
        str | None,
        typer.Option(
            "--add-instance",
            metavar="NAME",
            help="Add the bundle's instance NAME, which this host does not have yet, anchored on "
            "--root FILE or --root-sha256 HEX (a root the bundle carries with that digest).",
        ),
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="With --add-instance: its trust anchor (root.json).")
    ] = None,
    root_sha256: Annotated[
        str | None, typer.Option("--root-sha256", help="With --add-instance: the digest of its anchor.")
    ] = None,
    quiet: QuietOption = False,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a bundle from this host's own trust anchor and make it the current trust.

    The bundle is untrusted input: it adds trust only if it verifies from the anchor,
    never rolls back, and a failure changes nothing. Import never uses the network. A
    directory written by `trust export` is read by the same rules and verified the same way.

    Examples:

      trust import ./snapshots/2026-01-25.tar.zst --verify-manifest --reject-if-stale 7d

      trust import /media/usb/trust.tar.zst --offline --json

      trust import /media/usb/trust-bundle            # a `trust export` directory

      trust import trust.tar.zst --add-instance staging --root-sha256 HEX

    A bundle of several instances restores each under its name (or only --instance NAME),
    each verified from this host's own anchor for it; an instance this host does not have is
    refused unless --add-instance NAME gives its anchor.
    """
    from stella_trust._internal.bundle.carried import carried_instances

    flags = {"offline_mode": True} if offline else {}
    try:  # what the bundle carries and where each part goes, refused before anything changes
        window = duration_option(reject_if_stale, "--reject-if-stale")
        if (root is not None or root_sha256 is not None) and add_instance is None:
            raise UsageError("--root and --root-sha256 go with --add-instance NAME")
        carried = carried_instances(bundle, load(ctx, "default", **flags).bundle_limits)
        names = _import_names(ctx, carried, add_instance)
        if add_instance is not None:
            _add_instance(ctx, bundle, carried, add_instance, root, root_sha256)
    except StellaError as error:
        fail(error, as_json)

    def one(name: str, env: Envelope) -> Any:
        _import_one(ctx, name, carried, bundle, flags, verify_manifest, window, quiet or as_json, env)
        return env.result

    if len(names) == 1 and (carried.named is None or globals_of(ctx).instance is not None):
        # a one-instance bundle, or the one instance named: the result as before
        with reported(as_json) as env:
            _import_one(ctx, names[0], carried, bundle, flags, verify_manifest, window, quiet or as_json, env)
        return
    from stella_trust._cli.instances import each_instance

    each_instance(ctx, as_json, one, names)


def _import_names(ctx: typer.Context, carried: Any, add_instance: str | None) -> list[str]:
    """The host instances this import restores, each refused up front (nothing changed) when
    the host does not have it and it is not the one --add-instance adds."""
    from stella_trust._internal.settings import DEFAULT_INSTANCE, check_instance_name, host_instances

    forced = globals_of(ctx).instance
    if carried.named is None:  # a one-instance bundle goes to --instance, --add-instance or default
        names = [forced or add_instance or DEFAULT_INSTANCE]
    elif forced is not None:
        if forced not in carried.names():
            raise UsageError(
                f"the bundle carries no instance {forced!r} (it carries {', '.join(carried.names())})"
            )
        names = [forced]
    else:
        names = carried.names()
    if add_instance is not None:
        check_instance_name(add_instance)
    host = set(host_instances(config_path(ctx)))
    if add_instance is not None and add_instance in host:
        raise UsageError(
            f"this host already has the instance {add_instance!r}",
            hint=f"import into it without --add-instance (`trust import --instance {add_instance} BUNDLE`)",
        )
    if add_instance is not None and add_instance not in names:
        raise UsageError(f"--add-instance {add_instance}: the bundle carries no instance by that name here")
    missing = [name for name in names if name not in host and name != add_instance]
    if missing:
        from stella_trust.errors import NotInitialisedError

        first = missing[0]
        raise NotInitialisedError(
            f"this host does not have the instance(s) {', '.join(missing)}: nothing was imported",
            hint=f"add one with `trust import BUNDLE --add-instance {first} --root ROOT.json` (or "
            "--root-sha256 HEX), or import only the ones this host has with --instance NAME",
        )
    return names


def _add_instance(
    ctx: typer.Context,
    bundle: Path,
    carried: Any,
    name: str,
    root: Path | None,
    root_sha256: str | None,
) -> None:
    """`--add-instance NAME`: record the instance (a bundle-only one: no URL) anchored on the
    root the operator carried in (--root FILE), or on the root the bundle carries whose digest
    the operator carried in (--root-sha256), before its part is imported."""
    import tempfile

    from stella_trust._internal.anchor import HEX64, initialise
    from stella_trust._internal.bundle.carried import carried_root
    from stella_trust._internal.settings import instance_cache_path

    if (root is None) == (root_sha256 is None):
        raise UsageError(
            f"--add-instance {name} needs its trust anchor: --root FILE or --root-sha256 HEX (one of them)"
        )
    g = globals_of(ctx)
    flags: dict[str, Any] = {"offline_mode": True}
    if g.cache_dir is not None:
        flags["local_cache_path"] = instance_cache_path(g.cache_dir, name)
    limits = load(ctx, "default").bundle_limits
    with tempfile.TemporaryDirectory(prefix="stella-anchor-") as scratch:
        anchor_file = root
        if root_sha256 is not None:
            digest = root_sha256.strip().lower()
            if not HEX64.match(digest):
                raise UsageError("--root-sha256 must be 64 hexadecimal characters")
            part = name if carried.named is not None else "default"
            anchor_file = Path(scratch) / "anchor.root.json"
            anchor_file.write_bytes(carried_root(bundle, part, digest, limits, Path(scratch) / "read"))
        initialise(
            config_path(ctx),
            flags,
            root_file=anchor_file,
            root_sha256=None,
            trust_on_first_use=False,
            force=False,
            instance=name,
        )


def _import_one(
    ctx: typer.Context,
    name: str,
    carried: Any,
    bundle: Path,
    flags: dict[str, Any],
    verify_manifest: bool,
    window: Any,
    quiet: bool,
    env: Envelope,
) -> None:
    """One instance's part of the bundle into its own cache: the top level for `default` (and
    for a one-instance bundle), the nested part for a named instance."""
    from stella_trust._internal.bundle.carried import import_named
    from stella_trust._internal.bundle.importer import import_bundle
    from stella_trust._internal.store import Store

    settings = load(ctx, name, **flags)
    store = Store.of(settings)
    before = _verified_view_or_none(settings, store)
    with bundle_progress(f"import {bundle.name}", quiet) as progress:
        if carried.named is not None and name in carried.named:
            summary = import_named(
                settings,
                store,
                bundle,
                name,
                verify_manifest=verify_manifest,
                reject_if_stale=window,
                progress=progress,
            )
        else:
            summary = import_bundle(
                settings,
                store,
                bundle,
                verify_manifest=verify_manifest,
                reject_if_stale=window,
                progress=progress,
            )
    _print_bundle(summary, env)
    if summary.changed:
        from stella_trust._internal.policy.changes import describe_changes
        from stella_trust._internal.reader import load_view

        changes = describe_changes(before, load_view(settings, store))
        env.result["changes"] = changes
        for change in changes:
            env.say(f"  {change}")
    else:
        env.result["changes"] = []


def _verified_view_or_none(settings: Any, store: Any) -> Any:
    """The trust before an import, to say what the import changed (None: no usable trust)."""
    from stella_trust._internal.reader import load_view

    try:
        return load_view(settings, store)
    except StellaError:
        return None


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
