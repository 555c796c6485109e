"""Key files handed between people: a releaser's own key pair (`keygen`), a new
passphrase on a key (`change-passphrase`), and the keys a releaser or the timer host
needs, copied onto a drive (`export-keys`; root keys never leave their machines).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from stella_trust._internal.fs import OpenDir
from stella_trust.errors import UsageError
from stella_trust.repository.keyring import public_block
from stella_trust.repository.keys import (
    KEY_NAME,
    new_passphrase,
    passphrase,
    passphrase_name,
    passphrase_variable,
    reencrypt,
    save_key,
)
from stella_trust.repository.metadata import generate_signer
from stella_trust.repository.outcome import Outcome

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def export_keys(ws: Workspace, roles: list[str], out: Path) -> Outcome:
    """Copy the key files of ROLES onto a drive for the machine that signs them (the
    timer host, a releaser), through the one rule for directories others prepared (fs.py).
    Root keys are refused: they never leave their offline machines."""
    if "root" in roles:
        raise UsageError("root keys are never exported: they stay on the offline root machines")
    repo = ws.load()
    chosen = sorted({name for role in roles for name in ws.keys.at_hand(role, repo)})
    if not chosen:
        raise UsageError(f"no keys at hand for {', '.join(roles)}")
    # the drive's preparer may have planted links, and may swap keys/ for one while we write:
    # the drive is opened once, keys/ relative to it (never through a link), every key
    # created O_EXCL beside its name and renamed between held descriptors (fs.OpenDir)
    with OpenDir.open(out, create=True) as drive, drive.subdir("keys", create=True, mode=0o700) as keys:
        for name in chosen:
            keys.write(f"{name}.pem", (ws.keys_dir / f"{name}.pem").read_bytes(), 0o600)
    return Outcome(f"exported {', '.join(chosen)} to {out / 'keys'}")


def change_passphrase(ws: Workspace, key: Path) -> Outcome:
    """Same key, new passphrase: the old from STELLA_<NAME>_PASSPHRASE (or a prompt), the
    new from STELLA_<NAME>_NEW_PASSPHRASE (or a prompt, twice)."""
    path = ws.resolve(key)
    if not path.is_file() and not key.is_absolute() and len(key.parts) == 1:
        path = ws.keys_dir / (key.name if key.suffix == ".pem" else f"{key.name}.pem")
    if not path.is_file():
        raise UsageError(
            f"no key file {path}",
            hint="KEY is a path (relative to --path) or a name in keys/: see "
            f"`trust repo keys {ws.hint_path()}`",
        )
    reencrypt(path, passphrase(passphrase_name(path)), new_passphrase(passphrase_name(path)))
    return Outcome(
        f"changed the passphrase of {path}; set {passphrase_variable(passphrase_name(path))} to the new one"
    )


def keygen(ws: Workspace, name: str, key_type: str = "ed25519") -> Outcome:
    """A releaser's own key: keys/NAME.pem (encrypted) and NAME.pub to hand to the
    repository's targets holder for `trust repo delegate` (the private key never moves)."""

    if not KEY_NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a key name (letters, digits, '-', '_')")
    private = ws.keys_dir / f"{name}.pem"
    if private.exists():
        raise UsageError(f"{private} exists already")
    signer = generate_signer(key_type)
    ws.keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ws.keys_dir, 0o700)
    save_key(private, signer, passphrase(name, confirm=True))
    public = ws.path / f"{name}.pub"
    block = public_block(private.read_bytes())
    assert block is not None
    public.write_bytes(block)
    return Outcome(
        f"created {private} (keyid {signer.public_key.keyid[:16]}…) and {public}: hand {public.name} to "
        "the targets key holder (`trust repo delegate NAME --paths ... --key FILE`)",
        details={"keyid": signer.public_key.keyid, "public_key": str(public)},
    )
