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
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import parse

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust.errors import StellaError, UsageError
from stella_trust.repository.keys import KeyError_, key_name, load_key, passphrase, save_key
from stella_trust.repository.repo import Expiries, Repository, generate_signer
from stella_trust.store import atomic_write
from stella_trust.trust import iso, parse_duration

ROLES = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRES = {"root": "365d", "targets": "90d", "snapshot": "7d", "timestamp": "1d"}
LOW_LIFETIME = 0.25  # warn when a signed role has less than this share of its lifetime left


class RepoError(StellaError):
    default_hint = "see `trust repo status`; nothing was published"


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


def _signed_by(delegator: Root, role: str, md: Metadata[Any]) -> tuple[int, int]:
    """(valid signatures from the role's keys, threshold)."""
    result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    return len(result.signed), delegator.roles[role].threshold


@dataclass
class Outcome:
    """What a command did, for the CLI to print (and `--json`)."""

    message: str
    done: bool = True
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Workspace:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.keys_dir = self.path / "keys"
        self.staged_dir = self.path / "staged"
        self.repo_dir = self.path / "repository"
        self.config_path = self.path / "repo.json"

    # ---- configuration and keys ---------------------------------------------------------
    def config(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"{self.path} is not a trust repository workspace (no repo.json)",
                hint="run `trust repo init` there, or pass --path",
            ) from None
        return data

    def expiries(self) -> Expiries:
        lifetimes = self.config()["expires"]
        return Expiries(**{role: parse_duration(lifetimes[role]) for role in ROLES})

    def index(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads((self.keys_dir / "index.json").read_text())
        except FileNotFoundError:
            return {}
        return data

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

    # ---- targets --------------------------------------------------------------------------
    def _changes(self) -> dict[str, Any]:
        path = self.staged_dir / "changes.json"
        if not path.exists():
            return {"add": {}, "remove": []}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def _save_changes(self, changes: dict[str, Any]) -> None:
        atomic_write(self.staged_dir / "changes.json", json.dumps(changes, indent=2).encode() + b"\n")

    def add_target(self, file: Path, name: str | None, custom: dict[str, Any] | None) -> Outcome:
        self.config()
        name = name or file.name
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise UsageError(f"target name {name!r} is not a clean relative name")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from exc
        atomic_write(self.staged_dir / "targets" / parse.quote(name, safe=""), data)
        changes = self._changes()
        changes["add"][name] = {"custom": custom}
        changes["remove"] = [n for n in changes["remove"] if n != name]
        self._save_changes(changes)
        self._drop_staged_targets()
        return Outcome(f"staged {name} ({len(data)} bytes); run `trust repo publish`")

    def remove_target(self, name: str) -> Outcome:
        repo = self._load()
        changes = self._changes()
        if name not in repo.targets.signed.targets and name not in changes["add"]:
            raise UsageError(f"Unknown target {name!r}: neither published nor staged")
        changes["add"].pop(name, None)
        (self.staged_dir / "targets" / parse.quote(name, safe="")).unlink(missing_ok=True)
        if name in repo.targets.signed.targets and name not in changes["remove"]:
            changes["remove"].append(name)
        self._save_changes(changes)
        self._drop_staged_targets()
        return Outcome(f"staged removal of {name}; run `trust repo publish`")

    def _drop_staged_targets(self) -> None:
        """A change invalidates signatures collected on a previous staged targets file."""
        (self.staged_dir / "targets.json").unlink(missing_ok=True)

    def _load(self) -> Repository:
        self.config()
        try:
            return Repository.load(self.repo_dir, self.expiries())
        except (OSError, ValueError) as exc:
            raise RepoError(f"cannot load {self.repo_dir}: {exc}") from exc

    def _staged_targets(self, repo: Repository, now: datetime) -> Metadata[Targets]:
        path = self.staged_dir / "targets.json"
        if path.exists():
            return Metadata[Targets].from_file(str(path))
        changes = self._changes()
        md = Metadata[Targets].from_bytes(repo.targets.to_bytes())
        for name, change in changes["add"].items():
            data = (self.staged_dir / "targets" / parse.quote(name, safe="")).read_bytes()
            info = TargetFile.from_data(name, data, ["sha256"])
            if change.get("custom") is not None:
                info.unrecognized_fields["custom"] = change["custom"]
            md.signed.targets[name] = info
        for name in changes["remove"]:
            md.signed.targets.pop(name, None)
        md.signed.version += 1
        md.signed.expires = (now + repo.expiries.targets).replace(microsecond=0)
        md.signatures.clear()
        return md

    def publish(self, now: datetime | None = None) -> Outcome:
        """Sign targets, snapshot, timestamp with the keys at hand; publish only at threshold."""
        now = now or datetime.now(UTC)
        repo = self._load()
        root = repo.root.signed
        targets = self._staged_targets(repo, now)
        for signer in self._signers("targets", root.roles["targets"].keyids):
            targets.sign(signer, append=True)
        have, need = _signed_by(root, "targets", targets)
        if have < need:
            atomic_write(self.staged_dir / "targets.json", targets.to_bytes(JSONSerializer(compact=False)))
            return Outcome(
                f"targets v{targets.signed.version}: {have} of {need} signatures; staged, not "
                "published. Add one with `trust repo sign targets --key keys/NAME.pem` (on the "
                "machine holding it, carrying staged/targets.json), then `trust repo publish`",
                done=False,
                details={"targets": {"have": have, "need": need}},
            )
        repo.targets = targets
        for name in self._changes()["add"]:
            repo.target_data[name] = (self.staged_dir / "targets" / parse.quote(name, safe="")).read_bytes()
        for role in ("snapshot", "timestamp"):
            repo.signers[role] = self._require(role, root)
        repo.sign_snapshot_and_timestamp(now)
        repo.write()
        shutil.rmtree(self.staged_dir / "targets", ignore_errors=True)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        (self.staged_dir / "changes.json").unlink(missing_ok=True)
        self._drop_staged_targets()
        return Outcome(
            f"published targets v{targets.signed.version}, snapshot v{repo.snapshot.signed.version}, "
            f"timestamp v{repo.timestamp.signed.version}",
            warnings=self.lifetime_warnings(repo, now),
        )

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

    def timestamp(self, lifetime: timedelta | None = None, now: datetime | None = None) -> Outcome:
        """Re-sign only the timestamp: needs only the timestamp key (cron friendly)."""
        now = now or datetime.now(UTC)
        repo = self._load()
        repo.signers["timestamp"] = self._require("timestamp", repo.root.signed)
        expires = (now + (lifetime or repo.expiries.timestamp)).replace(microsecond=0)
        repo.resign_timestamp(now, expires)
        return Outcome(
            f"timestamp v{repo.timestamp.signed.version} expires {iso(expires)}",
            warnings=self.lifetime_warnings(repo, now),
        )

    # ---- root ceremony --------------------------------------------------------------------
    def _staged_root(self, repo: Repository, now: datetime) -> Metadata[Root]:
        path = self.staged_dir / "root.json"
        if path.exists():
            return Metadata[Root].from_file(str(path))
        md = Metadata[Root].from_bytes(repo.root.to_bytes())
        md.signed.version += 1
        md.signed.expires = (now + repo.expiries.root).replace(microsecond=0)
        md.signatures.clear()
        return md

    def _save_staged_root(self, md: Metadata[Root]) -> None:
        self.staged_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.staged_dir / "root.json", md.to_bytes(JSONSerializer(compact=False)))

    def root_edit(
        self,
        action: str,
        *,
        role: str,
        name: str | None = None,
        threshold: int | None = None,
        key_type: str | None = None,
        now: datetime | None = None,
    ) -> Outcome:
        """add-key / revoke-key / set-threshold on the staged root (signatures start over)."""
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        now = now or datetime.now(UTC)
        repo = self._load()
        md = self._staged_root(repo, now)
        had = len(md.signatures)
        root = md.signed
        if action == "add-key":
            name = name or self._free_name(role)
            if (self.keys_dir / f"{name}.pem").exists():
                raise UsageError(f"keys/{name}.pem exists already")
            signer = generate_signer(key_type or self.config().get("key_type", "ed25519"))
            self._register(name, role, signer, passphrase(name, confirm=True))
            root.add_key(signer.public_key, role)
            message = f"staged root v{root.version}: added key {name} for {role}"
        elif action == "revoke-key":
            if not name:
                raise UsageError("revoke-key needs a key name or keyid")
            keyid = self.index().get(name, {}).get("keyid", name)
            if keyid not in root.roles[role].keyids:
                raise UsageError(f"{name} is not a {role} key of the staged root")
            if len(root.roles[role].keyids) - 1 < root.roles[role].threshold:
                raise UsageError(
                    f"revoking {name} would leave {role} below its threshold "
                    f"{root.roles[role].threshold}; lower it first with set-threshold"
                )
            root.revoke_key(keyid, role)
            message = f"staged root v{root.version}: revoked {name} from {role}"
        elif action == "set-threshold":
            if threshold is None or not 1 <= threshold <= len(root.roles[role].keyids):
                raise UsageError(
                    f"threshold must be between 1 and the {len(root.roles[role].keyids)} {role} keys"
                )
            root.roles[role].threshold = threshold
            message = f"staged root v{root.version}: {role} threshold {threshold}"
        else:
            raise UsageError(f"unknown root action {action!r}")
        md.signatures.clear()
        self._save_staged_root(md)
        warnings = [f"the edit discarded {had} signature(s) on the staged root"] if had else []
        return Outcome(message + "; sign it with `trust repo sign root --key ...`", warnings=warnings)

    def _free_name(self, role: str) -> str:
        taken = set(self.index()) | {p.stem for p in self.keys_dir.glob("*.pem")}
        number = 1
        while (candidate := role if number == 1 else f"{role}{number}") in taken:
            number += 1
        return candidate

    def sign(self, role: str, key_file: Path, now: datetime | None = None) -> Outcome:
        """Add one signature to the staged root (or staged targets) with one key file."""
        now = now or datetime.now(UTC)
        signer = self.signer_from_file(key_file)
        if role == "root":
            repo = self._load()
            md: Metadata[Any] = self._staged_root(repo, now)
            md.sign(signer, append=True)
            self._save_staged_root(md)
            status = self.root_status(repo, md)
            return Outcome(f"signed staged root v{md.signed.version} with {key_file.name}; {status}")
        if role == "targets":
            path = self.staged_dir / "targets.json"
            if not path.exists():
                raise UsageError("no staged targets to sign: run `trust repo publish` first")
            md = Metadata[Targets].from_file(str(path))
            md.sign(signer, append=True)
            atomic_write(path, md.to_bytes(JSONSerializer(compact=False)))
            have, need = _signed_by(self._load().root.signed, "targets", md)
            return Outcome(f"signed staged targets with {key_file.name}: {have} of {need} signatures")
        raise UsageError("only root and targets are signed one key at a time")

    def root_status(self, repo: Repository, md: Metadata[Root]) -> str:
        old_have, old_need = _signed_by(repo.root.signed, "root", md)
        new_have, new_need = _signed_by(md.signed, "root", md)
        mark = {True: "met", False: "NOT met"}
        return (
            f"old root v{repo.root.signed.version} threshold {old_have}/{old_need} "
            f"{mark[old_have >= old_need]}, new root v{md.signed.version} threshold "
            f"{new_have}/{new_need} {mark[new_have >= new_need]}"
        )

    def status(self, now: datetime | None = None) -> Outcome:
        now = now or datetime.now(UTC)
        repo = self._load()
        lines = [f"repository {self.repo_dir}"]
        details: dict[str, Any] = {"roles": {}, "staged": {}}
        for role, md in (
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            signed = md.signed
            at_hand = self.keys_at_hand(role)
            threshold = repo.root.signed.roles[role].threshold
            lines.append(
                f"  {role:<9} v{signed.version}  expires {iso(signed.expires)}  threshold "
                f"{threshold}  keys here: {', '.join(at_hand) or '-'}"
            )
            details["roles"][role] = {
                "version": signed.version,
                "expires": iso(signed.expires),
                "threshold": threshold,
                "keys_at_hand": at_hand,
            }
        root_path = self.staged_dir / "root.json"
        if root_path.exists():
            staged = Metadata[Root].from_file(str(root_path))
            text = self.root_status(repo, staged)
            lines.append(f"staged root v{staged.signed.version}: {text}")
            details["staged"]["root"] = text
        targets_path = self.staged_dir / "targets.json"
        if targets_path.exists():
            staged_targets = Metadata[Targets].from_file(str(targets_path))
            have, need = _signed_by(repo.root.signed, "targets", staged_targets)
            lines.append(f"staged targets v{staged_targets.signed.version}: {have}/{need} signatures")
            details["staged"]["targets"] = {"have": have, "need": need}
        changes = self._changes()
        if changes["add"] or changes["remove"]:
            lines.append(
                f"staged changes: add {', '.join(changes['add']) or '-'}; "
                f"remove {', '.join(changes['remove']) or '-'}"
            )
            details["staged"]["changes"] = changes
        return Outcome("\n".join(lines), details=details, warnings=self.lifetime_warnings(repo, now))

    def commit(self, now: datetime | None = None) -> Outcome:
        """Publish the staged root only when the old and the new root thresholds are met."""
        now = now or datetime.now(UTC)
        repo = self._load()
        path = self.staged_dir / "root.json"
        if not path.exists():
            raise UsageError("no staged root to commit")
        md = Metadata[Root].from_file(str(path))
        try:
            repo.root.signed.verify_delegate("root", md.signed_bytes, md.signatures)
            md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise RepoError(
                f"commit refused: {self.root_status(repo, md)}",
                hint="collect more signatures with `trust repo sign root --key keys/NAME.pem`",
            ) from None
        if md.signed.version != repo.root.signed.version + 1:
            raise RepoError(f"staged root is v{md.signed.version}, expected v{repo.root.signed.version + 1}")
        repo.root = md
        repo.record_root()
        warnings = []
        for role, other in (
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            have, need = _signed_by(md.signed, role, other)
            if have < need:
                warnings.append(
                    f"{role} is not signed by the keys root v{md.signed.version} lists: re-sign it "
                    f"({'trust repo timestamp' if role == 'timestamp' else 'trust repo publish'}) "
                    "before clients sync"
                )
        repo.write()
        path.unlink()
        return Outcome(
            f"committed root v{md.signed.version}", warnings=warnings + self.lifetime_warnings(repo, now)
        )

    # ---- rotation ---------------------------------------------------------------------------
    def rotate(self, role: str, now: datetime | None = None) -> Outcome:
        """New key(s) for a role, root v+1 signed by old and new keys; all or nothing."""
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        now = now or datetime.now(UTC)
        repo = self._load()
        old_root = repo.root.signed
        old_root_signers = self._signers("root", old_root.roles["root"].keyids)
        key_type = self.config().get("key_type", "ed25519")
        names = [
            n for n in self.keys_at_hand(role) if self.index()[n]["keyid"] in old_root.roles[role].keyids
        ]
        count = len(old_root.roles[role].keyids)
        if len(names) < count:
            raise RepoError(f"rotate {role}: {count} key(s) to replace, {len(names)} at hand")
        secrets = {name: passphrase(name, confirm=True) for name in names}
        new_signers: dict[str, Signer] = {name: generate_signer(key_type) for name in names}
        staging = self.path / f".rotate-{role}"
        backup = self.path / f".rotate-{role}-before"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(self.repo_dir, staging / "repository")
        shutil.copytree(self.keys_dir, staging / "keys")
        try:
            trial = Repository.load(staging / "repository", repo.expiries)
            root = trial.root.signed
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            for signer in new_signers.values():
                root.add_key(signer.public_key, role)
            root.version += 1
            root.expires = (now + repo.expiries.root).replace(microsecond=0)
            trial.root.signatures.clear()
            root_signers = [*old_root_signers, *(new_signers.values() if role == "root" else [])]
            for signer in root_signers:
                trial.root.sign(signer, append=True)
            old_have, old_need = _signed_by(old_root, "root", trial.root)
            new_have, new_need = _signed_by(root, "root", trial.root)
            if old_have < old_need or new_have < new_need:
                raise RepoError(
                    f"rotate {role} refused: old root threshold {old_have}/{old_need}, new "
                    f"{new_have}/{new_need} with the root keys at hand"
                )
            trial.record_root()
            if role in ("targets", "snapshot", "timestamp"):
                resigned = (
                    ("targets", "snapshot", "timestamp") if role == "targets" else ("snapshot", "timestamp")
                )
                trial.signers = {
                    r: (list(new_signers.values()) if r == role else self._signers(r, root.roles[r].keyids))
                    for r in resigned
                }
                if role == "targets":
                    trial.targets.signed.version += 1
                    trial.targets.signed.expires = (now + repo.expiries.targets).replace(microsecond=0)
                    trial._sign(trial.targets)
                    have, need = _signed_by(root, "targets", trial.targets)
                    if have < need:
                        raise RepoError(f"rotate targets: {have}/{need} targets signatures at hand")
                trial.sign_snapshot_and_timestamp(now)
                for other, md in (("snapshot", trial.snapshot), ("timestamp", trial.timestamp)):
                    have, need = _signed_by(root, other, md)
                    if have < need:
                        raise RepoError(
                            f"rotate {role}: {other} needs {need} signature(s) under root "
                            f"v{root.version}, {have} with the keys at hand",
                            hint=f"run the rotation where the {other} key is at hand",
                        )
            trial.write()
            index = self.index()
            retired = staging / "keys" / "retired"
            retired.mkdir(exist_ok=True)
            for name, signer in new_signers.items():
                old_id = index[name]["keyid"]
                if (staging / "keys" / f"{name}.pem").exists():
                    os.replace(staging / "keys" / f"{name}.pem", retired / f"{name}-{old_id[:12]}.pem")
                from securesystemslib.signer import CryptoSigner

                assert isinstance(signer, CryptoSigner)
                save_key(staging / "keys" / f"{name}.pem", signer, secrets[name])
                index[name] = {
                    "role": role,
                    "keyid": signer.public_key.keyid,
                    "scheme": signer.public_key.scheme,
                }
            atomic_write(staging / "keys" / "index.json", json.dumps(index, indent=2).encode() + b"\n")
            # the switch: both directories move together; the old ones are kept until done
            backup.mkdir()
            os.rename(self.repo_dir, backup / "repository")
            os.rename(self.keys_dir, backup / "keys")
            os.rename(staging / "repository", self.repo_dir)
            os.rename(staging / "keys", self.keys_dir)
        except BaseException:
            if backup.exists():  # roll back a half-done switch
                for part in ("repository", "keys"):
                    if (backup / part).exists():
                        shutil.rmtree(self.path / part, ignore_errors=True)
                        os.rename(backup / part, self.path / part)
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(backup, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
        (self.staged_dir / "root.json").unlink(missing_ok=True)
        return Outcome(
            f"rotated {role}: {len(new_signers)} new key(s); root v{root.version} signed by the old "
            f"and the new root keys",
            warnings=[
                f"retired keys are in {self.keys_dir / 'retired'}: destroy them when clients have moved on"
            ],
        )

    # ---- reports ------------------------------------------------------------------------------
    def roots(self) -> Outcome:
        import hashlib

        repo = self._load()
        first, current = repo.root_history[0], repo.root_history[-1]
        first_sha = hashlib.sha256(first).hexdigest()
        current_sha = hashlib.sha256(current).hexdigest()
        text = (
            f"1.root.json sha256 {first_sha}  (pin: trust init --root-sha256 {first_sha})\n"
            f"{len(repo.root_history)}.root.json sha256 {current_sha}  (current root)"
        )
        return Outcome(
            text,
            details={
                "first": {"version": 1, "sha256": first_sha},
                "current": {"version": len(repo.root_history), "sha256": current_sha},
            },
        )

    def check(self, within: timedelta, now: datetime | None = None) -> Outcome:
        now = now or datetime.now(UTC)
        repo = self._load()
        expiring = []
        for role, md in (
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            if md.signed.expires <= now + within:
                expiring.append(f"{role} v{md.signed.version} expires {iso(md.signed.expires)}")
        if expiring:
            return Outcome(
                "expiring within " + str(within) + ": " + "; ".join(expiring),
                done=False,
                details={"expiring": expiring},
            )
        return Outcome(f"no role expires within {within}", details={"expiring": []})

    def export_keys(self, roles: list[str], out: Path) -> Outcome:
        if "root" in roles:
            raise UsageError("root keys are never exported: they stay on the offline root machines")
        index = self.index()
        chosen = {
            name: entry
            for name, entry in index.items()
            if entry["role"] in roles and (self.keys_dir / f"{name}.pem").is_file()
        }
        if not chosen:
            raise UsageError(f"no keys at hand for {', '.join(roles)}")
        (out / "keys").mkdir(parents=True, exist_ok=True)
        os.chmod(out / "keys", 0o700)
        for name in chosen:
            shutil.copy2(self.keys_dir / f"{name}.pem", out / "keys" / f"{name}.pem")
            os.chmod(out / "keys" / f"{name}.pem", 0o600)
        atomic_write(out / "keys" / "index.json", json.dumps(chosen, indent=2).encode() + b"\n")
        return Outcome(f"exported {', '.join(sorted(chosen))} to {out / 'keys'}")

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


__all__ = ["KeyError_", "Outcome", "RepoError", "Workspace", "parse_expires"]
