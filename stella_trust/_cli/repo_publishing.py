"""`trust repo` commands that change what is published: a new workspace (`init`),
staged target changes and delegations, `publish`, the online roles (`bump-online`,
`timestamp`), lifetimes (`set-expiry`), and moving the published state (`pull`, `push`).
Each is a thin wrapper over a command function of stella_trust.repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import JsonOption, duration_option
from stella_trust._cli.repo_options import (
    FromOption,
    PathOption,
    ToOption,
    emit,
    open_workspace,
    run,
    run_signing,
    source_of,
)
from stella_trust.errors import UsageError


def init(
    path: PathOption = Path("."),
    root_keys: Annotated[int, typer.Option("--root-keys", min=1)] = 3,
    root_threshold: Annotated[int, typer.Option("--root-threshold", min=1)] = 2,
    targets_keys: Annotated[int, typer.Option("--targets-keys", min=1, help="2 for production.")] = 1,
    targets_threshold: Annotated[int, typer.Option("--targets-threshold", min=1)] = 1,
    key_type: Annotated[str, typer.Option("--key-type", help="ed25519, ecdsa-p256 or rsa.")] = "ed25519",
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetimes, e.g. root=365d,targets=90d,snapshot=7d,timestamp=1d."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create keys/ (encrypted PEM, 0600), staged/ and repository/ with root v1.

    Passphrases come from STELLA_<KEY>_PASSPHRASE (STELLA_ROOT_PASSPHRASE,
    STELLA_ROOT2_PASSPHRASE, STELLA_TARGETS_PASSPHRASE, ...) or a terminal prompt.

    Example:

      trust repo init --path /srv/tuf --root-keys 3 --root-threshold 2 --targets-keys 2 --targets-threshold 2
    """
    from stella_trust.repository.commands.create import init as create_workspace
    from stella_trust.repository.expiry import parse_expires

    if key_type not in ("ed25519", "ecdsa-p256", "rsa"):
        raise typer.BadParameter("--key-type must be ed25519, ecdsa-p256 or rsa")

    def action(env: Envelope) -> None:
        emit(
            create_workspace(
                open_workspace(path),
                root_keys=root_keys,
                root_threshold=root_threshold,
                targets_keys=targets_keys,
                targets_threshold=targets_threshold,
                key_type=key_type,
                expires=parse_expires(expires),
            ),
            env,
        )

    run(as_json, action)


def add_target(
    file: Annotated[Path, typer.Argument(help="File to publish as a target.")],
    path: PathOption = Path("."),
    name: Annotated[str | None, typer.Option("--name", help="Target name (default: file name).")] = None,
    custom: Annotated[str | None, typer.Option("--custom", help="JSON object for `custom`.")] = None,
    role: Annotated[
        str | None, typer.Option("--role", help="Delegated role that signs it (default: targets).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Stage a target (added or replaced); `trust repo publish` signs and publishes it.

    Example:

      trust repo add-target trusted_root.json --custom '{"sigstore": {"usage": "trusted-root"}}'
    """
    from stella_trust.repository.commands.edits import add_target as stage_target

    def action(env: Envelope) -> None:
        extra = None
        if custom is not None:
            try:
                extra = json.loads(custom)
            except ValueError as exc:
                raise UsageError(f"--custom is not JSON: {exc}") from exc
            if not isinstance(extra, dict):
                raise UsageError("--custom must be a JSON object")
        emit(stage_target(open_workspace(path), file, name, extra, role), env)

    run(as_json, action)


def remove_target(
    name: Annotated[str, typer.Argument(help="Target name, or its unique file name.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Stage the removal of a target.

    Example:

      trust repo remove-target old-rekor.pub
    """
    from stella_trust.repository.commands.edits import remove_target as stage_removal

    run(as_json, lambda env: emit(stage_removal(open_workspace(path), name), env))


def publish(
    path: PathOption = Path("."),
    resign: Annotated[
        list[str] | None,
        typer.Option(
            "--resign", metavar="ROLE", help="Re-sign ROLE unchanged to renew its expiry (repeatable)."
        ),
    ] = None,
    source: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign the staged targets changes, snapshot and timestamp; publish at threshold only.

    Below the targets threshold the signed targets stay in staged/: carry it to the other
    key holder, `trust repo sign targets --key FILE`, carry it back, and publish again.
    Nothing is written unless a client starting from the published root accepts it.

    Example:

      trust repo add-target rekor.pub && trust repo publish --from https://tuf.example.com
    """
    from stella_trust.repository.commands.publish import publish as publish_staged

    run_signing(path, source, to, as_json, lambda w: publish_staged(w, resign=resign))


def bump_online(
    path: PathOption = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Re-sign even when nothing is due.")] = False,
    source: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-sign snapshot and timestamp when either is inside its refresh window (the timer).

    Needs only the snapshot and timestamp keys; the offline targets key is never asked for.
    With --from it takes the served state as it is (a release, a plain copy of an older
    drive, a race it lost) and signs above every version this host has seen; it exits 1
    when the served root no longer lists this host's keys.

    Example:

      trust repo bump-online --path /srv/tuf-signer --from /srv/www/tuf --to /srv/www/tuf
    """
    from stella_trust.repository.commands.online import bump_online as bump

    run_signing(path, source, to, as_json, lambda w: bump(w, force=force))


def timestamp(
    path: PathOption = Path("."),
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 1d.")] = None,
    source: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-sign the timestamp only; refused over an expired snapshot (use bump-online).

    Example:

      trust repo timestamp --path /srv/tuf-signer
    """
    from stella_trust.repository.commands.online import timestamp as resign_timestamp

    lifetime = duration_option(expires, "--expires")
    run_signing(path, source, to, as_json, lambda w: resign_timestamp(w, lifetime))


def set_expiry(
    role: Annotated[str, typer.Argument(help="root, targets, snapshot, timestamp or a delegated role.")],
    lifetime: Annotated[str, typer.Argument(help="New lifetime, e.g. 14d.")],
    resign_within: Annotated[
        str | None,
        typer.Option("--resign-within", help="Renew when less than this is left (default: in proportion)."),
    ] = None,
    path: PathOption = Path("."),
    source: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a role's lifetime and renewal window (signed into its metadata).

    Online roles are re-signed at once; targets and delegated roles take it at their next
    publish; root through a staged root (sign, commit).

    Example:

      trust repo set-expiry snapshot 14d --resign-within 7d
    """
    from stella_trust.repository.commands.edits import set_expiry as stage_expiry
    from stella_trust.repository.expiry import parse_rule

    try:
        rule = parse_rule(role, lifetime, resign_within)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    run_signing(path, source, to, as_json, lambda w: stage_expiry(w, role, rule))


def pull(
    source: Annotated[str, typer.Option("--from", metavar="URL|DIR", help="The published repository.")],
    path: PathOption = Path("."),
    root: Annotated[
        Path | None, typer.Option("--root", help="Trusted root for a new workspace (e.g. 1.root.json).")
    ] = None,
    metadata_only: Annotated[bool, typer.Option("--metadata-only", help="Skip target files.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Take the published state over an unserved local one (kept aside)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Make (or update) this workspace from a published repository, verified as a client would.

    Judged by content as well as versions: a fork (the same version with other bytes) is
    refused, --force takes the published state and keeps this one in repository.forked-*;
    a release signed here and not pushed yet is kept.

    Example:

      trust repo pull --from https://tuf.example.com --root 1.root.json --path ./signer
    """

    def action(env: Envelope) -> None:
        from stella_trust.repository.pulling import pull as pull_repository

        try:
            anchor = root.read_bytes() if root is not None else None
        except OSError as exc:
            raise UsageError(f"cannot read {root}: {exc.strerror}") from exc
        pulled = pull_repository(
            source_of(source), path / "repository", root=anchor, metadata_only=metadata_only, force=force
        )
        emit(pulled.outcome, env)

    run(as_json, action)


def push(
    to: Annotated[Path, typer.Option("--to", metavar="DIR", help="The served directory.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Copy repository/ to the served directory, the timestamp last; refused when the served
    state is not older than this one or this one does not verify from it.

    Example:

      trust repo push --to /srv/www/tuf
    """

    def action(env: Envelope) -> None:
        from stella_trust.repository.pushing import push as push_repository

        open_workspace(path).config()
        emit(push_repository(path / "repository", to), env)

    run(as_json, action)


def delegate(
    name: Annotated[str, typer.Argument(help="Name of the delegated role.")],
    paths: Annotated[list[str], typer.Option("--paths", metavar="PATTERN", help="Target paths it may sign.")],
    key: Annotated[
        list[Path], typer.Option("--key", metavar="PUBLIC.pem", help="The releaser's public key.")
    ],
    threshold: Annotated[int, typer.Option("--threshold", min=1)] = 1,
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Stage a delegation: NAME signs only the targets matching --paths, with its own key(s).

    Example:

      trust repo delegate releases --paths 'releases/*' --key alice.pub && trust repo publish
    """
    from stella_trust.repository.commands.edits import delegate as stage_delegation

    run(as_json, lambda env: emit(stage_delegation(open_workspace(path), name, paths, key, threshold), env))
