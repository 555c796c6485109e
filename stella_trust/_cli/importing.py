"""Air-gapped hosts: `trust import` (of one instance, or each instance a bundle carries)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust._cli.bundles import print_bundle
from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import (
    InstanceOption,
    JsonOption,
    config_path,
    duration_option,
    fail,
    globals_of,
    load,
    reported,
)
from stella_trust._cli.progress import QuietOption, bundle_progress
from stella_trust.errors import StellaError, UsageError


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
    print_bundle(summary, env)
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
