"""`trust repo ...`: the operator commands; thin wrappers over repository.workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust._cli.options import JsonOption, duration_option, reported
from stella_trust.errors import UsageError

repo_app = typer.Typer(
    help="Create, publish and rotate the TUF repository that hosts trust (operators).",
    no_args_is_help=True,
)
root_app = typer.Typer(help="Offline root ceremony: edit the staged root (version+1).", no_args_is_help=True)
repo_app.add_typer(root_app, name="root")

PathOption = Annotated[Path, typer.Option("--path", help="Workspace directory (default: here).")]


def _workspace(path: Path) -> Any:
    from stella_trust.repository import Workspace

    return Workspace(path)


def _emit(outcome: Any, as_json: bool, fail_when_not_done: bool = True) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "message": outcome.message,
                    "done": outcome.done,
                    "warnings": outcome.warnings,
                    **outcome.details,
                },
                indent=2,
            )
        )
    else:
        typer.echo(outcome.message)
    for warning in outcome.warnings:
        typer.echo(f"WARNING: {warning}", err=True)
    if fail_when_not_done and not outcome.done:
        raise typer.Exit(1)


def _run(as_json: bool, action: Any) -> None:
    with reported(as_json):
        action()


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

    def action() -> None:
        _emit(
            _workspace(path).init(
                root_keys=root_keys,
                root_threshold=root_threshold,
                targets_keys=targets_keys,
                targets_threshold=targets_threshold,
                key_type=key_type,
                expires=parse_expires(expires),
            ),
            as_json,
        )

    _run(as_json, action)


@repo_app.command("add-target")
def add_target(
    file: Annotated[Path, typer.Argument(help="File to publish as a target.")],
    path: PathOption = Path("."),
    name: Annotated[str | None, typer.Option("--name", help="Target name (default: file name).")] = None,
    custom: Annotated[str | None, typer.Option("--custom", help="JSON object for `custom`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Stage a target (added or replaced); `trust repo publish` signs and publishes it."""

    def action() -> None:
        extra = None
        if custom is not None:
            try:
                extra = json.loads(custom)
            except ValueError as exc:
                raise UsageError(f"--custom is not JSON: {exc}") from exc
            if not isinstance(extra, dict):
                raise UsageError("--custom must be a JSON object")
        _emit(_workspace(path).add_target(file, name, extra), as_json)

    _run(as_json, action)


@repo_app.command("remove-target")
def remove_target(name: str, path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Stage the removal of a target."""
    _run(as_json, lambda: _emit(_workspace(path).remove_target(name), as_json))


@repo_app.command("publish")
def publish(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Sign targets, snapshot, timestamp with the keys at hand; publish at threshold only.

    Below the targets threshold the signed targets stay in staged/targets.json: carry it
    to the other key holder, `trust repo sign targets --key keys/targets2.pem`, carry it
    back, and publish again. Warns when a role has < 25 % of its lifetime left.
    """
    _run(as_json, lambda: _emit(_workspace(path).publish(), as_json))


@repo_app.command("timestamp")
def timestamp(
    path: PathOption = Path("."),
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 1d.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-sign the timestamp only (needs only the timestamp key; for a timer)."""
    def action() -> None:
        _emit(_workspace(path).timestamp(duration_option(expires, "--expires")), as_json)

    _run(as_json, action)


@root_app.command("add-key")
def root_add_key(
    role: Annotated[str, typer.Option("--role", help="root, targets, snapshot or timestamp.")],
    path: PathOption = Path("."),
    name: Annotated[str | None, typer.Option("--name", help="Key file name (keys/NAME.pem).")] = None,
    key_type: Annotated[str | None, typer.Option("--key-type")] = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a key (keys/NAME.pem) and add it to ROLE in the staged root."""
    _run(
        as_json,
        lambda: _emit(
            _workspace(path).root_edit("add-key", role=role, name=name, key_type=key_type), as_json
        ),
    )


@root_app.command("revoke-key")
def root_revoke_key(
    key: Annotated[str, typer.Argument(help="Key name (as in keys/NAME.pem) or keyid.")],
    role: Annotated[str, typer.Option("--role")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Remove a key from ROLE in the staged root."""
    _run(as_json, lambda: _emit(_workspace(path).root_edit("revoke-key", role=role, name=key), as_json))


@root_app.command("set-threshold")
def root_set_threshold(
    role: str,
    threshold: int,
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Set ROLE's signature threshold in the staged root."""
    _run(
        as_json,
        lambda: _emit(_workspace(path).root_edit("set-threshold", role=role, threshold=threshold), as_json),
    )


@repo_app.command("sign")
def sign(
    role: Annotated[str, typer.Argument(help="root or targets.")],
    key: Annotated[Path, typer.Option("--key", help="One key file, e.g. keys/root2.pem.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Add one signature to the staged root or staged targets (one key, one machine)."""
    _run(as_json, lambda: _emit(_workspace(path).sign(role, key), as_json))


@repo_app.command("status")
def status(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Versions, expiries, thresholds, keys at hand, and what is staged."""
    _run(as_json, lambda: _emit(_workspace(path).status(), as_json))


@repo_app.command("commit")
def commit(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Publish the staged root; refused until the old AND the new root thresholds are met."""
    _run(as_json, lambda: _emit(_workspace(path).commit(), as_json))


@repo_app.command("rotate")
def rotate(
    role: Annotated[str, typer.Argument(help="targets, snapshot, timestamp or root.")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """New key(s) for ROLE; root v+1 signed by old and new keys; all or nothing."""
    _run(as_json, lambda: _emit(_workspace(path).rotate(role), as_json))


@repo_app.command("roots")
def roots(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Root digests for pinning clients (`trust init --root-sha256`)."""
    _run(as_json, lambda: _emit(_workspace(path).roots(), as_json))


@repo_app.command("check")
def check(
    path: PathOption = Path("."),
    within: Annotated[str, typer.Option("--within", help="Window, e.g. 30d.")] = "30d",
    as_json: JsonOption = False,
) -> None:
    """Exit 1 and list every role that expires within the window (for CI and monitoring)."""
    def action() -> None:
        _emit(_workspace(path).check(duration_option(within, "--within")), as_json)

    _run(as_json, action)


@repo_app.command("export-keys")
def export_keys(
    out: Annotated[Path, typer.Argument(help="Directory to receive keys/ for a releaser.")],
    roles: Annotated[str, typer.Option("--roles", help="Comma list, e.g. targets (never root).")],
    path: PathOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Hand a releaser only the keys they need (root keys are refused)."""
    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    _run(as_json, lambda: _emit(_workspace(path).export_keys(wanted, out), as_json))
