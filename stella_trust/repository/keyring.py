"""Key files found by what they are, not by what they are called.

A key file is usable for a role when its public key is one the role lists, whatever the
file is named: drives get split, files get renamed (`root.pem` -> `root1.pem`), a releaser
receives only `targets2.pem`. Each key file we write starts with its public key in clear
(`BEGIN PUBLIC KEY`) followed by the passphrase-encrypted private key, so the match needs
no passphrase. Older files without the public block are matched through `keys/index.json`,
which is only a cache of (file name -> keyid): it is never the truth, and a stale entry
cannot make a wrong key sign, because the signer is always built from the decrypted private
key and checked against the role's key before it is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from stella_trust.repository.keys import KeyFileError, key_name, load_private

PUBLIC_BEGIN = b"-----BEGIN PUBLIC KEY-----"
PUBLIC_END = b"-----END PUBLIC KEY-----"


def public_block(pem: bytes) -> bytes | None:
    """The clear public key block of one of our key files (or a public key file)."""
    start = pem.find(PUBLIC_BEGIN)
    end = pem.find(PUBLIC_END, start)
    if start < 0 or end < 0:
        return None
    return pem[start : end + len(PUBLIC_END)] + b"\n"


def same_key(public_pem: bytes, key: Key) -> bool:
    """Is this public key the role's `key`? Compared on the key value, under the key's own
    scheme, so keyids computed by other tools (Sigstore's, go-tuf's) match too."""
    from cryptography.hazmat.primitives import serialization

    try:
        public = serialization.load_pem_public_key(public_pem)
        candidate = SSlibKey.from_crypto(public, scheme=key.scheme)
    except (ValueError, TypeError):
        return False
    return candidate.keytype == key.keytype and candidate.keyval == key.keyval


@dataclass(frozen=True)
class KeyFile:
    """One private key file and, when known without a passphrase, its public key."""

    path: Path
    public_pem: bytes | None
    cached_keyid: str | None

    @property
    def name(self) -> str:
        return key_name(self.path)

    def is_key(self, keyid: str, key: Key) -> bool:
        if self.public_pem is not None:
            return same_key(self.public_pem, key)
        return self.cached_keyid == keyid

    def matching(self, keys: Mapping[str, Key], keyids: Iterable[str]) -> str | None:
        """The first of `keyids` this file holds the private key of."""
        for keyid in keyids:
            if keyid in keys and self.is_key(keyid, keys[keyid]):
                return keyid
        return None

    def signer_for(self, keyid: str, key: Key) -> CryptoSigner:
        """Decrypt (asking for the passphrase) and prove the private key is `key`.

        The signer carries the role's own Key object, so the signature's keyid is exactly
        the one the role lists (TUF spec 5.3.4 counts signatures by keyid).
        """
        private = load_private(self.path)
        public = SSlibKey.from_crypto(private.public_key(), scheme=key.scheme)
        if not (public.keytype == key.keytype and public.keyval == key.keyval):
            raise KeyFileError(
                f"{self.path} is not the key {keyid[:12]}… (its public key differs)",
                hint="pass the key file the role lists; see `trust repo keys`",
            )
        assert isinstance(key, SSlibKey)
        return CryptoSigner(private, key)


def read_index(keys_dir: Path) -> dict[str, str]:
    """file name -> keyid from the cache, ignoring a damaged cache (it is only a cache)."""
    try:
        data = json.loads((keys_dir / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        name: entry["keyid"]
        for name, entry in data.items()
        if isinstance(entry, dict) and isinstance(entry.get("keyid"), str)
    }


def key_file(path: Path, index: Mapping[str, str]) -> KeyFile:
    try:
        pem = path.read_bytes()
    except OSError:
        pem = b""
    return KeyFile(path=path, public_pem=public_block(pem), cached_keyid=index.get(key_name(path)))


def key_files(keys_dir: Path) -> list[KeyFile]:
    """Every private key file directly in `keys_dir` (retired keys are not at hand)."""
    if not keys_dir.is_dir():
        return []
    index = read_index(keys_dir)
    return [key_file(path, index) for path in sorted(keys_dir.glob("*.pem")) if path.is_file()]
