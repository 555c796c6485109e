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
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey
from tuf.api.metadata import Metadata, Root

from stella_trust._internal.fs import atomic_write
from stella_trust.repository.keys import KeyFileError, key_name, load_private, save_key
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import RepoError
from stella_trust.repository.roles import role_keys

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
        """The file's name without `.pem`: how keys are named in messages and passphrase variables."""
        return key_name(self.path)

    def is_key(self, keyid: str, key: Key) -> bool:
        """Does this file hold `key`? By its public block when it has one (the truth), else by
        the index's cached keyid (an older file; its signer is still checked when built)."""
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
    """One key file, its public block read without a passphrase (None for an older file)."""
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


class Keyring:
    """One workspace's key files (`keys/`) and what they can sign.

    Every question is answered from the files present now, matched by public key
    (module docstring), so a drive plugged in or a file renamed between two commands
    changes the answer and nothing has to be re-registered."""

    def __init__(self, keys_dir: Path, hint_path: str) -> None:
        self.keys_dir = keys_dir
        self.hint_path = hint_path  # `--path WS`, for hints a person pastes as they are

    def index(self) -> dict[str, str]:
        """file name -> keyid (a cache; see `read_index`)."""
        return read_index(self.keys_dir)

    def files(self) -> list[KeyFile]:
        """The key files at hand (retired ones are not)."""
        return key_files(self.keys_dir)

    def entries(self) -> dict[str, dict[str, Any]]:
        """keys/index.json as written: what this machine remembers of keys that left it."""
        try:
            data = json.loads((self.keys_dir / "index.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def remember(self, name: str, role: str, key: Key, origin: str | None = None) -> None:
        """keys/index.json: name -> keyid (a cache), and for a key added from a public key
        file, that file (`where_held` names it in messages)."""
        path = self.keys_dir / "index.json"
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[name] = {"role": role, "keyid": key.keyid, "scheme": key.scheme}
        if origin is not None:
            data[name]["from"] = origin
        atomic_write(path, json.dumps(data, indent=2).encode() + b"\n")

    def forget(self, name: str) -> None:
        """Drop a name from the cache (its file was renamed or retired)."""
        path = self.keys_dir / "index.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.pop(name, None) is not None:
            atomic_write(path, json.dumps(data, indent=2).encode() + b"\n")

    def register(self, name: str, role: str, signer: Signer, secret: bytes) -> None:
        """Write a new key as keys/NAME.pem (encrypted with `secret`, 0600, in a 0700
        directory) and remember it."""
        assert isinstance(signer, CryptoSigner)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        save_key(self.keys_dir / f"{name}.pem", signer, secret)
        self.remember(name, role, signer.public_key)

    def at_hand(self, role: str, repo: Repository | None = None, root: Root | None = None) -> list[str]:
        """Names of this machine's key files whose public key `role` lists."""
        keys, keyids, _ = role_keys(repo, role, root)
        return sorted(kf.name for kf in self.files() if kf.matching(keys, keyids))

    def signers(self, role: str, repo: Repository | None = None, root: Root | None = None) -> list[Signer]:
        """A signer for every key file at hand that `role` lists (one per keyid)."""
        keys, keyids, _ = role_keys(repo, role, root)
        signers: dict[str, Signer] = {}
        for kf in self.files():
            keyid = kf.matching(keys, [k for k in keyids if k not in signers])
            if keyid is not None:
                signers[keyid] = kf.signer_for(keyid, keys[keyid])
        return list(signers.values())

    def require(self, role: str, repo: Repository | None = None, root: Root | None = None) -> list[Signer]:
        """The signers of `role` at hand, refused below its threshold: a signature short of
        it would be written and then refused by every client."""
        signers = self.signers(role, repo, root)
        _, _, threshold = role_keys(repo, role, root)
        if len(signers) < threshold:
            version = (root or repo.root.signed).version if (root or repo) else "?"  # type: ignore[union-attr]
            raise RepoError(
                f"{role} needs {threshold} key(s) listed by root v{version}; "
                f"{len(signers)} at hand in {self.keys_dir}",
                hint=f"run this where the {role} key lives (any file name; see "
                f"`trust repo keys {self.hint_path}`)",
            )
        return signers

    def signer_from_file(self, path: Path, keys: dict[str, Key], keyids: list[str], what: str) -> Signer:
        """The signer of one key file, refused unless `what` lists its key: a signature by a
        key the role does not list is useless, and exit 0 would say it counted."""
        kf = key_file(path, self.index())
        keyid = kf.matching(keys, keyids)
        if keyid is None and kf.public_pem is None:
            # an old key file without its public block: decrypt it to know which key it is
            private = load_private(path)
            for candidate in keyids:
                key = keys.get(candidate)
                if (
                    key is not None
                    and SSlibKey.from_crypto(private.public_key(), scheme=key.scheme).keyval == key.keyval
                ):
                    assert isinstance(key, SSlibKey)
                    return CryptoSigner(private, key)
        if keyid is None:
            raise RepoError(
                f"refused: {path} is not one of the keys {what} lists",
                hint=f"see `trust repo keys {self.hint_path}` for which file serves which role",
            )
        return kf.signer_for(keyid, keys[keyid])

    def where_held(self, keyid: str, key: Key) -> str:
        """A key's whereabouts as this machine knows them: a file here, or what its index
        remembers of one that left (made here, or added from a public key file)."""
        for kf in self.files():
            if kf.is_key(keyid, key):
                return f"{kf.path} on this machine"
        for name, entry in self.entries().items():
            if entry.get("keyid") == keyid:
                if entry.get("from"):
                    return f"not on this machine; added from {entry['from']}"
                return f"not on this machine; made as keys/{name}.pem and moved since"
        return "not on this machine"

    def missing(self, repo: Repository, role: str, md: Metadata[Any], root: Root | None = None) -> str:
        """Which keys of `role` have not signed `md`, and where each one is held: what a
        staged step tells the operator to fetch."""
        keys, keyids, _ = role_keys(repo, role, root)
        absent = [k for k in keyids if k not in md.signatures]
        return f"{role} key(s) " + ", ".join(f"{k[:12]}… ({self.where_held(k, keys[k])})" for k in absent)
