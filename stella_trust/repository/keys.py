"""Operator keys: passphrase-encrypted PKCS#8 PEM files, and where passphrases come from.

A passphrase never travels through argv, logs or error messages. It comes from, in
order: a systemd credential (`$CREDENTIALS_DIRECTORY/stella-<name>-passphrase`, for the
timestamp timer), the environment (`STELLA_<NAME>_PASSPHRASE`, e.g. STELLA_ROOT2_PASSPHRASE
for keys/root2.pem), or a terminal prompt (with confirmation when a key is created).
Empty passphrases are refused.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from securesystemslib.signer import CryptoSigner, SSlibKey

from stella_trust._internal.fs import atomic_write
from stella_trust.errors import StellaError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class KeyFileError(StellaError):
    """A key file that cannot be read or opened (unreadable, wrong passphrase, not a key):
    its own type, so a caller can tell it from a refusal by the repository."""

    default_hint = "check the key file and its passphrase; nothing was changed"


KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def key_name(path: Path) -> str:
    """keys/root2.pem -> root2"""
    return path.name.removesuffix(".pem")


def passphrase_name(path: Path) -> str:
    """Whose passphrase opens a key file: a rotation's `targets.next.pem` keeps the one of
    the `targets.pem` it replaces (STELLA_TARGETS_PASSPHRASE)."""
    return key_name(path).removesuffix(".next")


def passphrase_variable(name: str) -> str:
    """The environment variable that holds key `name`'s passphrase (named in hints, never
    its value)."""
    return "STELLA_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_PASSPHRASE"


def passphrase(name: str, *, confirm: bool = False) -> bytes:
    """The passphrase for key `name`, from a credential, the environment or the terminal."""
    variable = passphrase_variable(name)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    value: str | None = None
    if credentials:
        credential = Path(credentials) / f"stella-{name}-passphrase"
        if credential.is_file():
            value = credential.read_text().rstrip("\n")
    if value is None:
        value = os.environ.get(variable)
    if value is None:
        if not sys.stdin.isatty():
            raise UsageError(
                f"no passphrase for key {name!r}",
                hint=f"set {variable} or run on a terminal to be prompted",
            )
        value = getpass.getpass(f"Passphrase for key {name}: ")
        if confirm and getpass.getpass(f"Repeat passphrase for key {name}: ") != value:
            raise UsageError(f"the passphrases for key {name!r} do not match")
    if not value:
        raise UsageError(f"empty passphrase for key {name!r} refused", hint="choose a non-empty passphrase")
    return value.encode()


def new_passphrase(name: str) -> bytes:
    """A replacement passphrase: STELLA_<NAME>_NEW_PASSPHRASE, or a prompt (twice)."""
    variable = passphrase_variable(name).replace("_PASSPHRASE", "_NEW_PASSPHRASE")
    value = os.environ.get(variable)
    if value is None:
        if not sys.stdin.isatty():
            raise UsageError(
                f"no new passphrase for key {name!r}", hint=f"set {variable} or run on a terminal"
            )
        value = getpass.getpass(f"New passphrase for key {name}: ")
        if getpass.getpass(f"Repeat new passphrase for key {name}: ") != value:
            raise UsageError(f"the new passphrases for key {name!r} do not match")
    if not value:
        raise UsageError(f"empty passphrase for key {name!r} refused", hint="choose a non-empty passphrase")
    return value.encode()


def save_key(path: Path, signer: CryptoSigner, secret: bytes) -> None:
    """Write the public key in clear, then the private key encrypted with `secret`, 0600.

    The clear public block lets any machine tell which role a file serves without its
    passphrase (repository/keyring.py); cryptography reads the private block past it.
    """
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(signer.private_bytes, password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    )
    atomic_write(path, public + pem, mode=0o600)
    os.chmod(path, 0o600)


def load_private(path: Path, secret: bytes | None = None) -> PrivateKeyTypes:
    """Decrypt a key file (asking for its passphrase if none is given)."""
    from cryptography.hazmat.primitives import serialization

    name = passphrase_name(path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from exc
    secret = secret if secret is not None else passphrase(name)
    try:
        return serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError):
        raise KeyFileError(
            f"wrong passphrase for key {path} (or not a private key)",
            hint=f"check {passphrase_variable(name)}; the passphrase is never shown",
        ) from None


def load_key(path: Path, secret: bytes | None = None, scheme: str | None = None) -> CryptoSigner:
    """A signer for a key file, its public key under `scheme` (the library's default if None)."""
    private = load_private(path, secret)
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), scheme=scheme))


def reencrypt(path: Path, old: bytes, new: bytes) -> None:
    """`change-passphrase`: same key, new passphrase; the file is replaced atomically."""
    private = load_private(path, old)
    save_key(path, CryptoSigner(private, SSlibKey.from_crypto(private.public_key())), new)
