"""The root ceremony: edit a staged root, collect signatures one key at a time, commit
only when the old and the new root thresholds are both met (TUF spec 5.3.4)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.keys import passphrase
from stella_trust.repository.metadata import Repository, generate_signer, signed_by
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.publish import PublishSteps
from stella_trust.repository.workspace import ROLES


class CeremonySteps(PublishSteps):
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
        now = now or utcnow()
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
        now = now or utcnow()
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
            have, need = signed_by(self._load().root.signed, "targets", md)
            return Outcome(f"signed staged targets with {key_file.name}: {have} of {need} signatures")
        raise UsageError("only root and targets are signed one key at a time")

    def root_status(self, repo: Repository, md: Metadata[Root]) -> str:
        old_have, old_need = signed_by(repo.root.signed, "root", md)
        new_have, new_need = signed_by(md.signed, "root", md)
        mark = {True: "met", False: "NOT met"}
        return (
            f"old root v{repo.root.signed.version} threshold {old_have}/{old_need} "
            f"{mark[old_have >= old_need]}, new root v{md.signed.version} threshold "
            f"{new_have}/{new_need} {mark[new_have >= new_need]}"
        )

    def commit(self, now: datetime | None = None) -> Outcome:
        """Publish the staged root only when the old and the new root thresholds are met."""
        now = now or utcnow()
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
            have, need = signed_by(md.signed, role, other)
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
