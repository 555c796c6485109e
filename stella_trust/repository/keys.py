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

from securesystemslib.signer import CryptoSigner, SSlibKey

from stella_trust._internal.fs import atomic_write
from stella_trust.errors import StellaError, UsageError


class KeyError_(StellaError):
    default_hint = "check the key file and its passphrase; nothing was changed"


def key_name(path: Path) -> str:
    """keys/root2.pem -> root2"""
    return path.name.removesuffix(".pem")


def passphrase_variable(name: str) -> str:
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


def save_key(path: Path, signer: CryptoSigner, secret: bytes) -> None:
    """Write the private key encrypted with `secret`, mode 0600."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(signer.private_bytes, password=None)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    )
    atomic_write(path, pem, mode=0o600)
    os.chmod(path, 0o600)


def load_key(path: Path, secret: bytes | None = None, scheme: str | None = None) -> CryptoSigner:
    """Decrypt a key file (asking for its passphrase if none is given)."""
    from cryptography.hazmat.primitives import serialization

    name = key_name(path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyError_(f"cannot read key {path}: {exc.strerror}") from exc
    secret = secret if secret is not None else passphrase(name)
    try:
        private = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError):
        raise KeyError_(
            f"wrong passphrase for key {path} (or not a private key)",
            hint=f"check {passphrase_variable(name)}; the passphrase is never shown",
        ) from None
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), scheme=scheme))
