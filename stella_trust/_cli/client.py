"""`trust init`, `trust sync`, `trust status`: the host's everyday commands.

No `from __future__ import annotations` here (nor in app.py): typer reads every parameter's
annotation of the command a run builds, and strings would be evaluated again at every run
(issue 24: half of building `status`). Names imported only for type checking are quoted.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stella_trust._cli.options import (
    InstanceOption,
    JsonOption,
    QuietOption,
    config_path,
    globals_of,
    init_command,
    load,
    reported,
    several,
    split_list,
)
from stella_trust.errors import EXIT_UNUSABLE, NotInitialisedError, StaleTrustError, StellaError

if TYPE_CHECKING:
    from stella_trust._cli.envelope import Envelope
    from stella_trust._internal.settings import TrustRepoSettings
    from stella_trust._internal.sync import SyncResult


def init(
    ctx: typer.Context,
    tuf_url: Annotated[str | None, typer.Option("--tuf-url", help="Repository base URL.")] = None,
    mirror: Annotated[
        list[str] | None,
        typer.Option("--mirror", help="Mirror base URL tried before --tuf-url (repeatable, in order)."),
    ] = None,
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
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            help="Add (or re-initialise) the named instance: its own anchor, URL, pins and cache "
            "(instances.NAME in the config); without it, the instance `default`.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Store the trust anchor, write the config section, then run a first sync.

    Examples:

      trust init --tuf-url https://tuf.example --root ./1.root.json

      trust init --tuf-url https://tuf.example --pin rekor-key-v2
      --root-sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

      trust init --tuf-url file:///media/usb/trust-bundle --offline --root ./root.json

      trust init --tuf-url https://tuf.example --mirror http://tuf-relay.site:8080 --root ./1.root.json
      trust init --instance staging --tuf-url https://tuf-repo.sigstage.dev --root ./staging-root.json
    """
    from stella_trust._internal.anchor import initialise, record_sources
    from stella_trust._internal.settings import DEFAULT_INSTANCE, check_instance_name, instance_cache_path

    g = globals_of(ctx)
    named = instance is not None and instance != DEFAULT_INSTANCE
    flags: dict[str, Any] = {
        "tuf_url": tuf_url,
        "mirrors": split_list(mirror),
        "service_map_target": service_map,
        "pinned_targets": split_list(pin),
        "environment": environment,
        "offline_mode": offline,
        "local_cache_path": g.cache_dir,
    }
    with reported(as_json) as env:
        if named:
            assert instance is not None
            check_instance_name(instance)
            if g.cache_dir is not None:
                flags["local_cache_path"] = instance_cache_path(g.cache_dir, instance)
        settings, anchor = initialise(
            config_path(ctx),
            flags,
            root_file=root,
            root_sha256=root_sha256,
            trust_on_first_use=trust_on_first_use,
            force=force,
            instance=instance if named else None,
        )
        if anchor.how == "tofu":
            env.warn(
                f"trusting the root the repository served (trust on first use): root v{anchor.version} "
                f"sha256 {anchor.sha256} — verify it out of band"
            )
        summary: dict[str, Any] = {
            **({"instance": instance} if named else {}),
            "config": str(config_path(ctx)),
            "cache": str(settings.local_cache_path),
            "root_version": anchor.version,
            "root_sha256": anchor.sha256,
            "anchor": anchor.how,
            "sync": None,
        }
        env.result = summary
        env.say(
            (f"instance {instance}: " if named else "")
            + f"initialised {settings.local_cache_path}: trusting root v{anchor.version} "
            f"(sha256 {anchor.sha256}); config {config_path(ctx)}"
        )
        if no_sync or settings.tuf_url is None or not settings.network_allowed:
            if settings.tuf_url is None or not settings.network_allowed:
                env.say(
                    "offline: no first sync; this host takes trust from bundles (`trust import FILE`)"
                    + ("" if settings.tuf_url is None else ", or `trust sync` once it is --online")
                )
            return
        try:
            result = _run_sync(settings, force=False, quiet=as_json)
        except StellaError as error:
            again = f"trust sync --instance {instance}" if named else "trust sync"
            raise StellaError(
                f"initialised, but the first sync failed: {error.message} — no trust yet",
                hint=f"fix that, then run `{again}` (the anchor is stored). {error.hint}".strip(),
                exit_code=error.exit_code,
            ) from error
        record_sources(config_path(ctx), settings, result.sources, instance if named else None)
        summary["sync"] = result.to_json()
        _report_sync(env, result)


def _run_sync(settings: "TrustRepoSettings", force: bool, quiet: bool = False) -> "SyncResult":
    """A sync with progress bars when a person is watching; the bars' fetcher follows the sync's own
    rules."""
    from stella_trust._cli.progress import sync_progress
    from stella_trust._internal.store import Store
    from stella_trust._internal.sync import sync as run_sync

    with sync_progress(settings, quiet) as fetcher:
        return run_sync(settings, Store.of(settings), force=force, fetcher=fetcher)


def _report_sync(env: "Envelope", result: "SyncResult") -> None:
    """The sync line (versions, requests, downloads), its changes in words, and a warning for each
    pin the repository retired, so the operator removes it from pinned_targets."""
    from stella_trust._internal.policy.selection import retired_pin_warning

    for pin in result.retired_pins:
        env.warn(retired_pin_warning(pin))
    versions = " ".join(f"{role} v{version}" for role, version in result.versions.items())
    what = "updated" if result.changed else "up to date"
    names = f": {', '.join(result.downloaded)}" if result.downloaded else ""
    env.say(
        f"sync: {what} ({versions}); {result.requests} requests, "
        f"{len(result.downloaded)} targets downloaded{names}, {result.seconds:.2f}s"
    )
    for change in result.changes:
        env.say(f"  {change}")
    for mirror in result.mirrors:
        if mirror["error"]:
            env.warn(f"mirror {mirror['url']} passed over: {mirror['error']}")


def sync(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Re-download and re-verify all metadata and targets.")
    ] = False,
    quiet: QuietOption = False,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refresh trust from the repository (idle: two requests, nothing re-downloaded).

    Any failure leaves the previous trust untouched and usable. Without --instance, every
    instance of the config is synced in turn; one's failure never touches another's trust.

    Examples:

      trust sync

      trust sync --force --json

      trust sync --instance staging
    """
    if several(ctx):
        from stella_trust._cli.instances import each_instance

        def one(name: str, env: "Envelope") -> Any:
            result = _run_sync(load(ctx, name), force, quiet or as_json)
            _report_sync(env, result)
            return result.to_json()

        each_instance(ctx, as_json, one)
        return
    with reported(as_json) as env:
        settings = load(ctx)
        path = config_path(ctx)
        if settings.tuf_url is None and not path.exists():
            # Nothing was ever initialised here: say so (exit 3, like every other command
            # on an uninitialised host), with an init that works when followed.
            raise NotInitialisedError(
                f"this host is not initialised: config {path} does not exist",
                hint=f"run `{init_command(globals_of(ctx))}` first",
            )
        result = _run_sync(settings, force, quiet or as_json)
        env.result = result.to_json()
        _report_sync(env, result)


def _sealed_logs(store: Any, view: Any) -> list[dict[str, Any]]:
    """Sealed transparency-log states a bundle carried, re-verified now with the view's log keys;
    nothing is imported for a host that holds none."""
    if not store.sealed_logs_dir.is_dir():
        return []
    from stella_trust._internal.sigstore.sealedlogs import read_sealed

    held = read_sealed(store.sealed_logs_dir, view.sigstore.transparency_logs)
    return [log.to_json(view.at) for log in held.values()]


def _mirror_health(settings: "TrustRepoSettings", store: Any) -> list[dict[str, Any]]:
    """Each configured mirror (and the origin after them) with its last success and last error
    from state.json (net/mirrors.py); nothing for a host without mirrors."""
    if not settings.mirrors:
        return []
    from stella_trust._internal.cachestate import mirror_report
    from stella_trust._internal.redact import redact

    try:
        recorded = store.read_state().mirrors
    except StellaError:  # an edited floor: the view's own read reported it already
        recorded = []
    return mirror_report([redact(base) for base in settings.repository_bases], recorded)


def status(
    ctx: typer.Context,
    show_keys: Annotated[
        bool, typer.Option("--show-keys", help="List public keys and certificates.")
    ] = False,
    show_endpoints: Annotated[
        bool, typer.Option("--show-endpoints", help="List Rekor/Fulcio URLs after overrides.")
    ] = False,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-verify the cache offline and report freshness, versions, keys and endpoints.

    Exit code 0 when fresh or in grace, 3 when stale, not initialised or tampered. Without
    --instance, every instance of the config (with --json, each under its name in
    .result.instances when there is more than one).

    Examples:

      trust status

      trust status --show-keys --show-endpoints

      trust status --json | jq .result.freshness.state

      trust status --instance staging
    """
    if several(ctx):
        from stella_trust._cli.instances import each_instance

        def one(name: str, env: "Envelope") -> Any:
            _status_of(load(ctx, name), env, show_keys, show_endpoints)
            return env.result

        each_instance(ctx, as_json, one)
        return
    with reported(as_json) as env:
        _status_of(load(ctx), env, show_keys, show_endpoints)


def _status_of(settings: "TrustRepoSettings", env: "Envelope", show_keys: bool, show_endpoints: bool) -> None:
    """One instance's status into `env`: the view as JSON, its text, its warnings, and a
    failure (exit 3) when its trust is not usable."""
    from stella_trust._internal.reader import load_view
    from stella_trust._internal.store import Store

    as_json = env.as_json
    store = Store.of(settings)
    try:
        view = load_view(settings, store)
    except StellaError as error:
        if error.exit_code == 1:  # a cache that cannot be served is "trust not usable"
            error.exit_code = EXIT_UNUSABLE
        raise
    env.result = view.to_json()
    sealed = _sealed_logs(store, view)
    env.result["sealed_logs"] = sealed
    mirrors = _mirror_health(settings, store)
    if mirrors:
        env.result["mirrors"] = mirrors
    if not as_json:  # the text is for people; --json prints the envelope only
        from stella_trust._cli.render import render_status

        env.say(render_status(view, show_keys=show_keys, show_endpoints=show_endpoints))
        if mirrors:
            from stella_trust._cli.render import render_mirrors

            env.say(render_mirrors(mirrors))
        for log in sealed:
            env.say(
                f"sealed log {log['origin']}: tree size {log['tree_size']}, last {log['depth']} "
                f"entries, fetched {log['fetched_at'] or 'at an unknown time'}"
                + (f" ({log['age_seconds'] // 3600} h ago)" if "age_seconds" in log else "")
            )
    for pin in view.missing_pins:
        why = (
            "was retired by the repository (remove it from pinned_targets)"
            if pin in view.retired_pins
            else "is not in the cache yet (run `trust sync`)"
        )
        env.warn(f"pinned target {pin!r} {why}")
    if view.freshness.state == "grace":
        env.warn(
            f"signed metadata expired at {env.result['freshness']['expires']}; "
            f"trust stays usable until {env.result['freshness']['stale_after']}"
        )
    if not view.usable:
        env.fail(StaleTrustError("trust is stale and must not be used"))
