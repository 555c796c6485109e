"""Key rotation (TUF spec 5.3.4 and 5.3.11): a new root version that replaces one role's
keys, signed by the old root threshold (and by the new root keys when root itself
rotates), then the roles that the new keys sign re-signed, all checked before anything
is written. One implementation: operators run it through `trust repo rotate`, and tests
drive the same function on in-memory repositories.
"""

from __future__ import annotations

from datetime import datetime

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from stella_trust.repository.metadata import Repository, signed_by
from stella_trust.repository.outcome import RepoError


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
        repo.targets.signed.version = repo.next_version("targets", repo.targets.signed.version)
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
