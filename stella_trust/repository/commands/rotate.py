"""`rotate`: new keys for one role in a staged root v+1, signed with the root keys at hand,
committed at once when every threshold is met here (repository/rotation.py is the same step
on an in-memory Repository), else left staged for the other root key holders.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.commands.ceremony import new_staged_root, root_status
from stella_trust.repository.commands.commit import commit
from stella_trust.repository.keys import passphrase
from stella_trust.repository.metadata import generate_signer
from stella_trust.repository.outcome import Outcome
from stella_trust.repository.roles import ROLES, signatures
from stella_trust.repository.staging import NEXT

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def rotate(ws: Workspace, role: str, now: datetime | None = None) -> Outcome:
    """New key(s) for ROLE in a staged root v+1, signed with the root keys at hand; it is
    committed (re-signing what the new keys sign, checked as a client would) when every
    threshold is met here, else it stays staged for the other key holders. A root
    ceremony already in progress is never discarded."""
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    now = now or utcnow()
    repo = ws.load()
    staged = ws.staging.root(repo)
    if staged is not None:
        raise UsageError(
            f"a root ceremony is in progress (staged root v{staged.signed.version}): "
            "rotating now would discard it",
            hint=f"finish it (`trust repo commit {ws.hint_path()}`) or drop it "
            f"(`trust repo clean {ws.hint_path()}`) first",
        )
    root = repo.root.signed
    by_keyid = {kf.matching(dict(root.keys), root.roles[role].keyids): kf.name for kf in ws.keys.files()}
    names: list[str] = []
    for index, keyid in enumerate(root.roles[role].keyids):
        name = by_keyid.get(keyid) or (role if index == 0 else f"{role}{index + 1}")
        while name in names:
            name += "x"
        names.append(name)
    for name in names:
        if (ws.keys_dir / f"{name}{NEXT}.pem").exists():
            raise UsageError(
                f"keys/{name}{NEXT}.pem exists from an earlier rotation",
                hint=f"`trust repo clean {ws.hint_path()}` moves abandoned rotation keys to keys/retired/",
            )
    # each new key keeps the passphrase variable of the key it replaces (STELLA_<NAME>_PASSPHRASE)
    secrets = {name: passphrase(name, confirm=True) for name in names}
    md = new_staged_root(ws, repo, now)
    for keyid in list(md.signed.roles[role].keyids):
        md.signed.revoke_key(keyid, role)
    new_signers = {name: generate_signer(ws.key_type()) for name in names}
    for name, signer in new_signers.items():
        md.signed.add_key(signer.public_key, role)
        ws.keys.register(f"{name}{NEXT}", role, signer, secrets[name])
    for root_signer in ws.keys.signers("root", repo):
        md.sign(root_signer, append=True)
    if role == "root":
        for signer in new_signers.values():
            md.sign(signer, append=True)
    ws.staging.save_root(md)
    old_have, old_need = signatures(repo, "root", md)
    new_have, new_need = signatures(repo, "root", md, root=md.signed)
    if old_have < old_need or new_have < new_need:
        return Outcome(
            f"staged root v{md.signed.version} with {len(names)} new {role} key(s) "
            f"(keys/{', keys/'.join(n + NEXT + '.pem' for n in names)}); {root_status(repo, md)}. "
            "Carry staged/root.json to each root key holder: `trust repo sign root --key FILE`, then "
            f"`trust repo commit {ws.hint_path()}` here",
            done=False,
            hint="collect the root signatures; nothing was published",
            details={"staged_root": md.signed.version},
        )
    outcome = commit(ws, now)
    return Outcome(
        f"rotated {role}: {len(names)} new key(s); {outcome.message}",
        done=outcome.done,
        warnings=outcome.warnings,
        details=outcome.details,
        hint=outcome.hint,
    )
