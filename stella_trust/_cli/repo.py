"""`trust repo ...`: the operator commands; thin wrappers over repository.workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import JsonOption, duration_option, reported
from stella_trust.errors import UsageError

repo_app = typer.Typer(
    help="Create, publish and rotate the TUF repository that hosts trust (operators).",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n"
        "  trust repo init --path ./tuf-workspace\n\n"
        "  trust repo add-target trusted_root.json --path ./tuf-workspace\n\n"
        "  trust repo publish --to /srv/www/tuf --path ./tuf-workspace\n\n"
        "  trust repo check --within 60d --path ./tuf-workspace\n\n"
        "Each subcommand's --help has more examples; README.md walks whole procedures."
    ),
)
root_app = typer.Typer(
    help="Offline root ceremony: edit the staged root (version+1).",
    no_args_is_help=True,
    epilog=(
        "Examples (in the workspace directory, e.g. after cd /mnt/ceremony):\n\n"
        "  trust repo root add-key --role root --name root4\n\n"
        "  trust repo root set-threshold root 3\n\n"
        "  trust repo sign root --key keys/root.pem\n\n"
        "  trust repo sign root --key keys/root2.pem\n\n"
        "  trust repo sign root --key keys/root4.pem\n\n"
        "  trust repo commit\n\n"
        "Each subcommand's --help has more examples."
    ),
)
repo_app.add_typer(root_app, name="root")

PathOption = Annotated[Path, typer.Option("--path", help="Workspace directory (default: here).")]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="URL|DIR",
        help="Pull the published repository first (verified), so this machine signs on the "
        "published counters, never its own.",
    ),
]
ToOption = Annotated[
    Path | None,
    typer.Option(
        "--to", metavar="DIR", help="Then push the result to the served directory (timestamp last)."
    ),
]


def _source(spec: str) -> Any:
    """A published repository to read: a directory, or a URL read through the client's own
    fetcher (per-operation timeout, one deadline for the whole request from connect to the
    last byte, identity encoding; repository/ may not import it, so it is handed in here)."""
    from stella_trust.repository.source import REQUEST_DEADLINE, REQUEST_TIMEOUT, Source

    if spec.startswith(("http://", "https://")):
        from stella_trust._internal.net.fetcher import HttpxFetcher

        return Source(spec, fetcher=HttpxFetcher(timeout=REQUEST_TIMEOUT, deadline=REQUEST_DEADLINE))
    return Source(spec)


def _workspace(path: Path, source: str | None = None, to: Path | None = None) -> Any:
    from stella_trust.repository import Workspace

    return Workspace(path, _source(source) if source is not None else None, to)


def _signing(path: Path, source: str | None, to: Path | None, as_json: bool, step: Any) -> None:
    """Run a signing step on the published state (`--from`), publishing into `--to DIR`
    before this workspace's own repository/ is written; `--to DIR` alone starts from DIR.
    The whole step holds DIR's lock, so two publishers never interleave."""

    def action(env: Envelope) -> None:
        workspace = _workspace(path, source, to)
        with workspace.session():
            outcome = step(workspace)
        _emit(outcome, env)

    _run(as_json, action)


def _emit(outcome: Any, env: Envelope) -> None:
    """An operator Outcome into the envelope: `result` holds the message and the details;
    a step that is not done (staged, below threshold, a check that found problems) exits 1
    with the message as error and the step's own hint."""
    env.result = {"message": outcome.message, "done": outcome.done, **outcome.details}
    env.say(outcome.message)
    for warning in outcome.warnings:
        env.warn(warning)
    if not outcome.done:
        from stella_trust.repository.outcome import RepoError

        env.fail(
            RepoError(
                outcome.message.splitlines()[0],
                hint=outcome.hint or "see the message above; nothing was published",
            )
        )


def _run(as_json: bool, action: Any) -> None:
    with reported(as_json) as env:
        action(env)


@repo_app.command("init")
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
    from stella_trust.repository import parse_expires

    if key_type not in ("ed25519", "ecdsa-p256", "rsa"):
        raise typer.BadParameter("--key-type must be ed25519, ecdsa-p256 or rsa")

    def action(env: Envelope) -> None:
        _emit(
            _workspace(path).init(
                root_keys=root_keys,
                root_threshold=root_threshold,
                targets_keys=targets_keys,
                targets_threshold=targets_threshold,
                key_type=key_type,
                expires=parse_expires(expires),
            ),
            env,
        )

    _run(as_json, action)


@repo_app.command("add-target")
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

    def action(env: Envelope) -> None:
        extra = None
        if custom is not None:
            try:
                extra = json.loads(custom)
            except ValueError as exc:
                raise UsageError(f"--custom is not JSON: {exc}") from exc
            if not isinstance(extra, dict):
                raise UsageError("--custom must be a JSON object")
        _emit(_workspace(path).add_target(file, name, extra, role), env)

    _run(as_json, action)


@repo_app.command("remove-target")
def remove_target(
    name: Annotated[str, typer.Argument(help="Target name, or its unique file name.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Stage the removal of a target.

    Example:

      trust repo remove-target old-rekor.pub
    """
    _run(as_json, lambda env: _emit(_workspace(path).remove_target(name), env))


@repo_app.command("publish")
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
    _signing(path, source, to, as_json, lambda w: w.publish(resign=resign))


@repo_app.command("bump-online")
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
    _signing(path, source, to, as_json, lambda w: w.bump_online(force=force))


@repo_app.command("timestamp")
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
    lifetime = duration_option(expires, "--expires")
    _signing(path, source, to, as_json, lambda w: w.timestamp(lifetime))


@repo_app.command("set-expiry")
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
    from stella_trust.repository.expiry import parse_rule

    try:
        rule = parse_rule(role, lifetime, resign_within)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _signing(path, source, to, as_json, lambda w: w.set_expiry(role, rule))


@repo_app.command("pull")
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
            _source(source), path / "repository", root=anchor, metadata_only=metadata_only, force=force
        )
        _emit(pulled.outcome, env)

    _run(as_json, action)


@repo_app.command("push")
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
        from stella_trust.repository.published import push as push_repository

        _workspace(path).config()
        _emit(push_repository(path / "repository", to), env)

    _run(as_json, action)


@root_app.command("add-key")
def root_add_key(
    role: Annotated[str, typer.Option("--role", help="root, targets, snapshot or timestamp.")],
    path: PathOption = Path("."),
    name: Annotated[str | None, typer.Option("--name", help="Key file name (keys/NAME.pem).")] = None,
    key_type: Annotated[str | None, typer.Option("--key-type")] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Add a key made elsewhere (PEM public key; an HSM's)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a key (keys/NAME.pem), or take --public-key, and add it to ROLE in the staged root.

    Example:

      trust repo root add-key --role targets --public-key releaser.pub
    """
    _run(
        as_json,
        lambda env: _emit(
            _workspace(path).root_edit(
                "add-key", role=role, name=name, key_type=key_type, public_key=public_key
            ),
            env,
        ),
    )


@root_app.command("revoke-key")
def root_revoke_key(
    key: Annotated[str, typer.Argument(help="Key name (as in keys/NAME.pem) or keyid.")],
    role: Annotated[str, typer.Option("--role")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Remove a key from ROLE in the staged root.

    Example:

      trust repo root revoke-key 3f2a9c01 --role root
    """
    _run(as_json, lambda env: _emit(_workspace(path).root_edit("revoke-key", role=role, name=key), env))


@root_app.command("set-threshold")
def root_set_threshold(
    role: str,
    threshold: int,
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Set ROLE's signature threshold in the staged root.

    Example:

      trust repo root set-threshold targets 2
    """
    _run(
        as_json,
        lambda env: _emit(_workspace(path).root_edit("set-threshold", role=role, threshold=threshold), env),
    )


@repo_app.command("sign")
def sign(
    role: Annotated[str, typer.Argument(help="root, targets or a delegated role.")],
    key: Annotated[Path, typer.Option("--key", help="One key file, any name, e.g. /mnt/root2/root2.pem.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Add one signature to the staged ROLE; refused for a key ROLE does not list.

    Example:

      trust repo sign root --key /media/root-drive-2/keys/root2.pem
    """
    _run(as_json, lambda env: _emit(_workspace(path).sign(role, key), env))


@repo_app.command("payload")
def payload(
    role: Annotated[str, typer.Argument(help="root, targets or a delegated role.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    path: PathOption = Path("."),
) -> None:
    """Write the canonical bytes to sign for the staged ROLE (for a hardware key).

    Example:

      trust repo payload root --out root.payload && yubihsm-sign root.payload > root.sig
    """
    import sys

    def action(env: Envelope) -> None:
        data = _workspace(path).payload(role)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            from stella_trust._internal.fs import atomic_write

            atomic_write(out, data)

    _run(False, action)


@repo_app.command("add-signature")
def add_signature(
    role: Annotated[str, typer.Argument(help="root, targets or a delegated role.")],
    keyid: Annotated[str, typer.Option("--keyid", help="The key's id (or its first 8+ characters).")],
    sig: Annotated[Path, typer.Option("--sig", help="Signature file: raw bytes or hex.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Add a signature made elsewhere over `trust repo payload ROLE`; verified before kept.

    Example:

      trust repo add-signature root --keyid 3f2a9c01 --sig root.sig
    """

    def action(env: Envelope) -> None:
        try:
            data = sig.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {sig}: {exc.strerror}") from exc
        _emit(_workspace(path).add_signature(role, keyid, data), env)

    _run(as_json, action)


@repo_app.command("status")
def status(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Versions, expiries, thresholds, keys at hand, and what is staged.

    Example:

      trust repo status --path /mnt/ceremony
    """
    _run(as_json, lambda env: _emit(_workspace(path).status(), env))


@repo_app.command("keys")
def keys(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Every key the roles list: keyid, roles, and the file here that holds it.

    Example:

      trust repo keys --json | jq '.result.keys[] | select(.file == null)'
    """
    _run(as_json, lambda env: _emit(_workspace(path).keys(), env))


@repo_app.command("commit")
def commit(
    path: PathOption = Path("."),
    source: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish the staged root: both root thresholds met, every role re-signed that the new
    root needs, and the result accepted by a client; else refused, nothing written. When a
    role needs keys held elsewhere, the root and that role are staged as one set (exit 1,
    naming each key and where it is held): `commit` on that machine completes it.

    Example:

      trust repo commit --path /mnt/ceremony
    """
    _signing(path, source, to, as_json, lambda w: w.commit())


@repo_app.command("rotate")
def rotate(
    role: Annotated[str, typer.Argument(help="targets, snapshot, timestamp or root.")],
    path: PathOption = Path("."),
    source: FromOption = None,
    to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """New key(s) for ROLE in a staged root v+1; committed when the keys here meet every
    threshold, else left staged for the other key holders (exit 1, nothing published).

    Example:

      trust repo rotate targets
    """
    _signing(path, source, to, as_json, lambda w: w.rotate(role))


@repo_app.command("clean")
def clean(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Drop staged state: the root under ceremony (and the roles staged with it), staged
    roles and target changes; a key `root add-key` made stays, and the same add-key uses it.

    Example:

      trust repo clean
    """
    _run(as_json, lambda env: _emit(_workspace(path).clean(), env))


@repo_app.command("change-passphrase")
def change_passphrase(
    key: Annotated[Path, typer.Argument(help="Key file (relative to --path first), or its name in keys/.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Re-encrypt a key file: old passphrase from STELLA_<NAME>_PASSPHRASE or a prompt, new
    from STELLA_<NAME>_NEW_PASSPHRASE or a prompt.

    Example:

      trust repo change-passphrase keys/targets.pem
    """
    _run(as_json, lambda env: _emit(_workspace(path).change_passphrase(key), env))


@repo_app.command("delegate")
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
    _run(as_json, lambda env: _emit(_workspace(path).delegate(name, paths, key, threshold), env))


@repo_app.command("keygen")
def keygen(
    name: Annotated[str, typer.Argument(help="Key name: keys/NAME.pem and NAME.pub.")],
    key_type: Annotated[str, typer.Option("--key-type", help="ed25519, ecdsa-p256 or rsa.")] = "ed25519",
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Make a releaser's key pair here; hand NAME.pub to the targets key holder.

    Example:

      trust repo keygen ci --path /srv/ci-signer
    """
    if key_type not in ("ed25519", "ecdsa-p256", "rsa"):
        raise typer.BadParameter("--key-type must be ed25519, ecdsa-p256 or rsa")
    _run(as_json, lambda env: _emit(_workspace(path).keygen(name, key_type), env))


@repo_app.command("roots")
def roots(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Root digests for pinning clients (`trust init --root-sha256`).

    Example:

      trust repo roots --json | jq -r .result.first.sha256
    """
    _run(as_json, lambda env: _emit(_workspace(path).roots(), env))


@repo_app.command("check")
def check(
    path: PathOption = Path("."),
    within: Annotated[
        str | None,
        typer.Option("--within", help="Alarm window for offline roles, e.g. 60d (default: each role's own)."),
    ] = None,
    valid_at: Annotated[
        str | None, typer.Option("--valid-at", metavar="DATE", help="Judge at this time (ISO 8601).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Exit 1 when a role needs attention: an offline role inside --within, an online role
    whose re-sign was missed, anything expired. Green on a healthy repository.

    Example:

      trust repo check --json | jq '.result.roles[] | select(.state != "ok")'
    """

    def action(env: Envelope) -> None:
        moment = None
        if valid_at is not None:
            from datetime import UTC, datetime

            try:
                moment = datetime.fromisoformat(valid_at.replace("Z", "+00:00"))
            except ValueError:
                raise UsageError(f"--valid-at {valid_at!r} is not an ISO 8601 date") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        window = duration_option(within, "--within") if within is not None else None
        _emit(_workspace(path).check(window, valid_at=moment), env)

    _run(as_json, action)


@repo_app.command("export-keys")
def export_keys(
    out: Annotated[Path, typer.Argument(help="Directory to receive keys/ for a releaser.")],
    roles: Annotated[str, typer.Option("--roles", help="Comma list, e.g. targets (never root).")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Hand a releaser only the keys they need (root keys are refused).

    Example:

      trust repo export-keys /media/signing-drive --roles snapshot,timestamp
    """
    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    _run(as_json, lambda env: _emit(_workspace(path).export_keys(wanted, out), env))
