"""The operator's repository workspace behind `trust repo`.

Layout of `--path DIR`::

    keys/<name>.pem        passphrase-encrypted PKCS#8 private keys (0600)
    keys/index.json        public facts: which file is which keyid, for which role
    keys/retired/          keys replaced by a rotation
    repo.json              role lifetimes and key type
    staged/                work in progress: root under ceremony, targets awaiting
                           signatures, target files and changes to publish
    repository/            the publishable HTTP layout (metadata/, targets/)

The safe path is the easy one: nothing reaches `repository/` unless every threshold it
needs is met (checked with python-tuf's own `verify_delegate`), root edits go through
a staged root that the old and the new root thresholds must both sign, and each staged
file can be carried between machines so keys never have to meet.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Root

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import iso, parse_duration
from stella_trust.errors import UsageError
from stella_trust.repository.keys import key_name, load_key, passphrase, save_key
from stella_trust.repository.metadata import Expiries, Repository, generate_signer
from stella_trust.repository.outcome import Outcome, RepoError

ROLES = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRES = {"root": "365d", "targets": "90d", "snapshot": "7d", "timestamp": "1d"}
LOW_LIFETIME = 0.25  # warn when a signed role has less than this share of its lifetime left


RESTORE_HINT = "restore the workspace file from your backup (or the other machine's copy)"


def parse_expires(text: str | None) -> dict[str, str]:
    """`root=365d,timestamp=1d` -> lifetimes per role (defaults for the others)."""
    lifetimes = dict(DEFAULT_EXPIRES)
    for part in filter(None, (text or "").split(",")):
        role, _, value = part.partition("=")
        role = role.strip()
        if role not in ROLES or not value:
            raise UsageError(f"--expires: {part!r} is not ROLE=DURATION with ROLE in {', '.join(ROLES)}")
        try:
            parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"--expires: {exc}") from exc
        lifetimes[role] = value.strip()
    return lifetimes


class WorkspaceBase:
    """The workspace's files and keys; the operator steps build on it (publish, ceremony,
    rotation, reports), each in its own module."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.keys_dir = self.path / "keys"
        self.staged_dir = self.path / "staged"
        self.repo_dir = self.path / "repository"
        self.config_path = self.path / "repo.json"

    # ---- configuration and keys ---------------------------------------------------------
    def config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"{self.path} is not a trust repository workspace (no repo.json)",
                hint="run `trust repo init` there, or pass --path",
            ) from None
        except (OSError, ValueError) as exc:
            raise RepoError(
                f"{self.config_path} is unreadable or not JSON ({exc})", hint=RESTORE_HINT
            ) from exc
        expires = data.get("expires") if isinstance(data, dict) else None
        if not isinstance(expires, dict) or not all(isinstance(expires.get(r), str) for r in ROLES):
            raise RepoError(
                f"{self.config_path} is corrupt: 'expires' must map {', '.join(ROLES)} to durations",
                hint=RESTORE_HINT,
            )
        config: dict[str, Any] = data
        return config

    def expiries(self) -> Expiries:
        lifetimes = self.config()["expires"]
        try:
            return Expiries(**{role: parse_duration(lifetimes[role]) for role in ROLES})
        except ValueError as exc:
            raise RepoError(f"{self.config_path}: {exc}", hint=RESTORE_HINT) from exc

    def index(self) -> dict[str, dict[str, str]]:
        path = self.keys_dir / "index.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RepoError(f"{path} is unreadable or not JSON ({exc})", hint=RESTORE_HINT) from exc
        fields = ("role", "keyid", "scheme")
        if not isinstance(data, dict) or not all(
            isinstance(entry, dict) and all(isinstance(entry.get(f), str) for f in fields)
            for entry in data.values()
        ):
            raise RepoError(f"{path} is corrupt: each key needs role, keyid and scheme", hint=RESTORE_HINT)
        index: dict[str, dict[str, str]] = data
        return index

    def _save_index(self, index: dict[str, dict[str, str]]) -> None:
        atomic_write(self.keys_dir / "index.json", json.dumps(index, indent=2).encode() + b"\n")

    def _register(self, name: str, role: str, signer: Signer, secret: bytes) -> None:
        from securesystemslib.signer import CryptoSigner

        assert isinstance(signer, CryptoSigner)
        save_key(self.keys_dir / f"{name}.pem", signer, secret)
        index = self.index()
        index[name] = {"role": role, "keyid": signer.public_key.keyid, "scheme": signer.public_key.scheme}
        self._save_index(index)

    def keys_at_hand(self, role: str) -> list[str]:
        """Names of this machine's key files for `role` (per the index)."""
        return sorted(
            name
            for name, entry in self.index().items()
            if entry["role"] == role and (self.keys_dir / f"{name}.pem").is_file()
        )

    def signer(self, name: str) -> Signer:
        entry = self.index().get(name)
        path = self.keys_dir / f"{name}.pem"
        return load_key(path, scheme=entry["scheme"] if entry else None)

    def signer_from_file(self, path: Path) -> Signer:
        entry = self.index().get(key_name(path))
        return load_key(path, scheme=entry["scheme"] if entry else None)

    def _signers(self, role: str, keyids: list[str]) -> list[Signer]:
        """Every key at hand for `role` that the root still lists."""
        signers = []
        for name in self.keys_at_hand(role):
            if self.index()[name]["keyid"] in keyids:
                signers.append(self.signer(name))
        return signers

    # ---- init ---------------------------------------------------------------------------
    def init(
        self,
        *,
        root_keys: int = 3,
        root_threshold: int = 2,
        targets_keys: int = 1,
        targets_threshold: int = 1,
        key_type: str = "ed25519",
        expires: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> Outcome:
        if (self.repo_dir / "metadata").exists() or self.config_path.exists():
            raise UsageError(f"{self.path} already holds a repository workspace")
        if not 1 <= root_threshold <= root_keys:
            raise UsageError("--root-threshold must be between 1 and --root-keys")
        if not 1 <= targets_threshold <= targets_keys:
            raise UsageError("--targets-threshold must be between 1 and --targets-keys")
        lifetimes = expires or dict(DEFAULT_EXPIRES)
        names = {
            "root": ["root" if i == 0 else f"root{i + 1}" for i in range(root_keys)],
            "targets": ["targets" if i == 0 else f"targets{i + 1}" for i in range(targets_keys)],
            "snapshot": ["snapshot"],
            "timestamp": ["timestamp"],
        }
        secrets = {name: passphrase(name, confirm=True) for role in ROLES for name in names[role]}
        signers: dict[str, list[Signer]] = {
            role: [generate_signer(key_type) for _ in names[role]] for role in ROLES
        }
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.config_path,
            json.dumps({"expires": lifetimes, "key_type": key_type}, indent=2).encode() + b"\n",
        )
        expiries = self.expiries()
        for role in ROLES:
            for name, signer in zip(names[role], signers[role], strict=True):
                self._register(name, role, signer, secrets[name])
        Repository.create(
            self.repo_dir,
            root_keys=root_keys,
            root_threshold=root_threshold,
            key_type=key_type,
            expiries=expiries,
            now=now,
            signers=signers,
            thresholds={"targets": targets_threshold},
        )
        return Outcome(
            f"created {self.repo_dir} (root v1: {root_keys} keys, threshold {root_threshold}; "
            f"targets threshold {targets_threshold}); keys in {self.keys_dir}"
        )

    def _load(self) -> Repository:
        self.config()
        try:
            return Repository.load(self.repo_dir, self.expiries())
        except (OSError, ValueError) as exc:
            raise RepoError(f"cannot load {self.repo_dir}: {exc}") from exc

    def _require(self, role: str, root: Root) -> list[Signer]:
        signers = self._signers(role, root.roles[role].keyids)
        threshold = root.roles[role].threshold
        if len(signers) < threshold:
            raise RepoError(
                f"{role} needs {threshold} key(s) listed by root v{root.version}; "
                f"{len(signers)} at hand in {self.keys_dir}",
                hint=f"run this where the {role} key lives (see `trust repo export-keys`)",
            )
        return signers

    def lifetime_warnings(self, repo: Repository, now: datetime) -> list[str]:
        warnings = []
        for role, md in (
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            lifetime = repo.expiries.of(role)
            left = md.signed.expires - now
            if left < lifetime * LOW_LIFETIME:
                warnings.append(
                    f"{role} v{md.signed.version} has {left} of its {lifetime} lifetime left "
                    f"(expires {iso(md.signed.expires)}): re-sign it soon"
                )
        return warnings
