"""`trust repo` commands of the root ceremony: edit the staged root, sign it (with a key
file, or a hardware key through `payload` and `add-signature`), `commit` it, `rotate` a
role's keys, and `clean` what is staged. Thin wrappers over stella_trust.repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stella_trust._cli.envelope import Envelope
from stella_trust._cli.options import JsonOption
from stella_trust._cli.repo_options import (
    FromOption,
    PathOption,
    ToOption,
    emit,
    open_workspace,
    run,
    run_signing,
)
from stella_trust.errors import UsageError


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
    from stella_trust.repository.commands.ceremony import root_edit as edit_root

    run(
        as_json,
        lambda env: emit(
            edit_root(
                open_workspace(path),
                "add-key",
                role=role,
                name=name,
                key_type=key_type,
                public_key=public_key,
            ),
            env,
        ),
    )


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
    from stella_trust.repository.commands.ceremony import root_edit as edit_root

    run(as_json, lambda env: emit(edit_root(open_workspace(path), "revoke-key", role=role, name=key), env))


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
    from stella_trust.repository.commands.ceremony import root_edit as edit_root

    run(
        as_json,
        lambda env: emit(
            edit_root(open_workspace(path), "set-threshold", role=role, threshold=threshold), env
        ),
    )


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
    from stella_trust.repository.commands.signing import sign as sign_staged

    run(as_json, lambda env: emit(sign_staged(open_workspace(path), role, key), env))


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

    from stella_trust.repository.commands.signing import payload as staged_payload

    def action(env: Envelope) -> None:
        data = staged_payload(open_workspace(path), role)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            from stella_trust._internal.fs import write_output

            write_output(out.absolute(), data)  # a link at OUT is replaced, never written through

    run(False, action)


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
    from stella_trust.repository.commands.signing import add_signature as add_staged_signature

    def action(env: Envelope) -> None:
        try:
            data = sig.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {sig}: {exc.strerror}") from exc
        emit(add_staged_signature(open_workspace(path), role, keyid, data), env)

    run(as_json, action)


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
    from stella_trust.repository.commands.commit import commit as commit_root

    run_signing(path, source, to, as_json, lambda w: commit_root(w))


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
    from stella_trust.repository.commands.rotate import rotate as rotate_keys

    run_signing(path, source, to, as_json, lambda w: rotate_keys(w, role))


def clean(path: PathOption = Path("."), as_json: JsonOption = False) -> None:
    """Drop staged state: the root under ceremony (and the roles staged with it), staged
    roles and target changes; a key `root add-key` made stays, and the same add-key uses it.

    Example:

      trust repo clean
    """
    from stella_trust.repository.commands.edits import clean as clean_staged

    run(as_json, lambda env: emit(clean_staged(open_workspace(path)), env))
