"""`trust repo` commands that report and hand keys around, changing nothing published:
`status`, `keys`, `roots`, `check`, and a key's life (`keygen`, `change-passphrase`,
`export-keys`). Thin wrappers over stella_trust.repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import JsonOption, duration_option
from stella_trust._cli.repo_options import (
    PathOption,
    emit,
    open_workspace,
    run,
)
from stella_trust.errors import UsageError


def status(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Versions, expiries, thresholds, keys at hand, and what is staged.

    Example:

      trust repo status --path /mnt/ceremony
    """
    from stella_trust.repository.commands.reports import status as report_status

    run(as_json, lambda env: emit(report_status(open_workspace(path)), env))


def keys(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Every key the roles list: keyid, roles, and the file here that holds it.

    Example:

      trust repo keys --json | jq '.result.keys[] | select(.file == null)'
    """
    from stella_trust.repository.commands.reports import keys as report_keys

    run(as_json, lambda env: emit(report_keys(open_workspace(path)), env))


def roots(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Root digests for pinning clients (`trust init --root-sha256`).

    Example:

      trust repo roots --json | jq -r .result.first.sha256
    """
    from stella_trust.repository.commands.reports import roots as report_roots

    run(as_json, lambda env: emit(report_roots(open_workspace(path)), env))


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
    from stella_trust.repository.commands.reports import check as report_check

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
        emit(report_check(open_workspace(path), window, valid_at=moment), env)

    run(as_json, action)


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
    from stella_trust.repository.commands.keypairs import change_passphrase as rewrap

    run(as_json, lambda env: emit(rewrap(open_workspace(path), key), env))


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
    from stella_trust.repository.commands.keypairs import keygen as make_key

    if key_type not in ("ed25519", "ecdsa-p256", "rsa"):
        raise typer.BadParameter("--key-type must be ed25519, ecdsa-p256 or rsa")
    run(as_json, lambda env: emit(make_key(open_workspace(path), name, key_type), env))


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
    from stella_trust.repository.commands.keypairs import export_keys as export

    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    run(as_json, lambda env: emit(export(open_workspace(path), wanted, out), env))
