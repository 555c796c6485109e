"""Key rotation (TUF spec 5.3.4 and 5.3.11): a new root version that replaces one role's
keys, signed by the old root threshold (and by the new root keys when root itself
rotates), then the roles that the new keys sign re-signed, all checked before anything
is written. One implementation: operators run it through `trust repo rotate`, and tests
drive the same function on in-memory repositories.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.ceremony import CeremonySteps
from stella_trust.repository.keys import passphrase, save_key
from stella_trust.repository.metadata import Repository, generate_signer, signed_by
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.workspace import ROLES


def rotate_role(
    repo: Repository, role: str, new_signers: list[Signer], root_signers: list[Signer], now: datetime
) -> None:
    """Replace every key of `role` by `new_signers` in root v+1, in memory; raise RepoError
    if a threshold is not met with the keys given (nothing is written here).

    `repo.signers` must hold the keys at hand for the roles re-signed afterwards: after a
    targets rotation targets, snapshot and timestamp; after snapshot or timestamp, both.
    """
    old_root = Metadata[Root].from_bytes(repo.root.to_bytes()).signed
    root = repo.root.signed
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    for signer in new_signers:
        root.add_key(signer.public_key, role)
    root.version += 1
    root.expires = (now + repo.expiries.root).replace(microsecond=0)
    repo.root.signatures.clear()
    for signer in [*root_signers, *(new_signers if role == Root.type else [])]:
        repo.root.sign(signer, append=True)
    old_have, old_need = signed_by(old_root, Root.type, repo.root)
    new_have, new_need = signed_by(root, Root.type, repo.root)
    if old_have < old_need or new_have < new_need:
        raise RepoError(
            f"rotate {role} refused: old root threshold {old_have}/{old_need}, new "
            f"{new_have}/{new_need} with the root keys at hand"
        )
    repo.record_root()
    repo.signers[role] = list(new_signers)
    if role == Root.type:
        return
    if role == Targets.type:
        repo.targets.signed.version += 1
        repo.targets.signed.expires = (now + repo.expiries.targets).replace(microsecond=0)
        repo.sign_role(repo.targets)
        have, need = signed_by(root, Targets.type, repo.targets)
        if have < need:
            raise RepoError(f"rotate targets: {have}/{need} targets signatures at hand")
    repo.sign_snapshot_and_timestamp(now)
    for other, md in ((Snapshot.type, repo.snapshot), (Timestamp.type, repo.timestamp)):
        have, need = signed_by(root, other, md)
        if have < need:
            raise RepoError(
                f"rotate {role}: {other} needs {need} signature(s) under root "
                f"v{root.version}, {have} with the keys at hand",
                hint=f"run the rotation where the {other} key is at hand",
            )


class RotationSteps(CeremonySteps):
    def rotate(self, role: str, now: datetime | None = None) -> Outcome:
        """New key(s) for a role, root v+1 signed by old and new keys; all or nothing.

        The new state is built in a copy of `repository/` and `keys/`; both directories
        are switched together (and switched back if anything fails).
        """
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        now = now or utcnow()
        repo = self._load()
        old_root = repo.root.signed
        old_root_signers = self._signers("root", old_root.roles["root"].keyids)
        key_type = self.config().get("key_type", "ed25519")
        index = self.index()
        names = [n for n in self.keys_at_hand(role) if index[n]["keyid"] in old_root.roles[role].keyids]
        count = len(old_root.roles[role].keyids)
        if len(names) < count:
            raise RepoError(f"rotate {role}: {count} key(s) to replace, {len(names)} at hand")
        secrets = {name: passphrase(name, confirm=True) for name in names}
        new_signers: dict[str, CryptoSigner] = {name: generate_signer(key_type) for name in names}
        staging = self.path / f".rotate-{role}"
        backup = self.path / f".rotate-{role}-before"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(self.repo_dir, staging / "repository")
        shutil.copytree(self.keys_dir, staging / "keys")
        try:
            trial = Repository.load(staging / "repository", repo.expiries)
            resigned = {
                "targets": ("snapshot", "timestamp"),
                "snapshot": ("timestamp",),
                "timestamp": ("snapshot",),
            }.get(role, ())
            trial.signers = {r: self._signers(r, old_root.roles[r].keyids) for r in resigned}
            rotate_role(trial, role, list(new_signers.values()), old_root_signers, now)
            trial.write()
            retired = staging / "keys" / "retired"
            retired.mkdir(exist_ok=True)
            for name, signer in new_signers.items():
                old_id = index[name]["keyid"]
                if (staging / "keys" / f"{name}.pem").exists():
                    os.replace(staging / "keys" / f"{name}.pem", retired / f"{name}-{old_id[:12]}.pem")
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
            f"rotated {role}: {len(new_signers)} new key(s); root v{trial.root.signed.version} signed "
            "by the old and the new root keys",
            warnings=[
                f"retired keys are in {self.keys_dir / 'retired'}: destroy them when clients have moved on"
            ],
        )
