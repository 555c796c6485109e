"""What a user names for a verification, read and checked before any cryptography runs.

The artifact (a path, or `sha256:<hex>`), the bundle, a trusted root or public key file, and
who must have signed (a certificate identity and issuer, or a managed key): bad input is one
usage line here, never a verification failure. `trust verify` and `trust-sigstore-client`
both read their arguments through this module (they are sibling entry points and may not
import each other).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from stella_trust._internal.fs.files import read_bounded
from stella_trust._internal.sigstore.bundleinput import MAX_BUNDLE_BYTES
from stella_trust._internal.sigstore.errors import BundleRefusedError
from stella_trust._internal.sigstore.signers import IdentityPolicy, KeyPolicy, Policy
from stella_trust.errors import StellaError, UsageError

DIGEST_PREFIX = "sha256:"
MAX_INPUT_BYTES = MAX_BUNDLE_BYTES  # bundles, trusted roots and keys are small documents
MAX_KEYED_ARTIFACT_BYTES = 1 << 30  # managed-key signatures need the artifact in memory


def make_policy(
    *,
    identity: str | None = None,
    identity_regexp: str | None = None,
    issuer: str | None = None,
    issuer_regexp: str | None = None,
    key_pem: bytes | None = None,
) -> Policy:
    """Who must have signed: a managed key, or a certificate identity and OIDC issuer."""
    if key_pem is not None:
        if any(v is not None for v in (identity, identity_regexp, issuer, issuer_regexp)):
            raise UsageError("--key cannot be combined with certificate identity or issuer options")
        return KeyPolicy(public_key_pem=key_pem)
    if identity is None and identity_regexp is None:
        raise UsageError(
            "say who must have signed: --certificate-identity (or -regexp) with "
            "--certificate-oidc-issuer (or -regexp), or --key PEM"
        )
    return IdentityPolicy(
        identity=identity, identity_regexp=identity_regexp, issuer=issuer, issuer_regexp=issuer_regexp
    )


def _open_regular(path: Path, what: str) -> tuple[BinaryIO, int]:
    """`path` opened, then checked to be a regular file (its size too): opening first and
    asking the descriptor means a file swapped for a FIFO after a check cannot hang the
    command (O_NONBLOCK), nor a device be read in place of the file checked."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UsageError(f"{what} {path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size


def read_input(path: Path, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A regular file of at most `limit` bytes, or one clear line (never /dev/zero forever)."""
    try:
        handle, size = _open_regular(path, what)
        with handle:
            if size > limit:
                raise BundleRefusedError(f"{what} {path} is {size} bytes, above the {limit}-byte limit")
            data = read_bounded(handle, limit)
    except OSError as exc:
        raise StellaError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise BundleRefusedError(f"{what} {path} grew above the {limit}-byte limit while being read")
    return data


def artifact_input(value: str, *, need_bytes: bool) -> bytes | str:
    """The artifact argument: a well-formed `sha256:<64 hex>` that is not a file on disk is a
    digest (sigstore-conformance's rule, and cosign's habit); anything else is a path, hashed
    as a stream (an artifact may be gigabytes). Managed-key bundles need the bytes themselves
    (`need_bytes`): a signature over the message, not over a digest."""
    hex_part = value.removeprefix(DIGEST_PREFIX)
    if (
        value.startswith(DIGEST_PREFIX)
        and len(hex_part) == 64
        and all(c in "0123456789abcdefABCDEF" for c in hex_part)
        and not Path(value).exists()
    ):
        return value
    path = Path(value)
    if need_bytes:
        return read_input(path, "artifact", MAX_KEYED_ARTIFACT_BYTES)
    try:
        digest = hashlib.sha256()
        handle, _ = _open_regular(path, "artifact")
        with handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise StellaError(f"cannot read artifact {path}: {exc.strerror or exc}") from None
    return DIGEST_PREFIX + digest.hexdigest()
