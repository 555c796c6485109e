"""The root ceremony's edits: a staged root v+1 (`root add-key`, `revoke-key`,
`set-threshold`), the keys it adds (made here, or a public key made elsewhere), and how
far its signatures are (`root_status`). Signing it is signing.py; publishing it, with every
role it invalidates, is commit.py (TUF spec 5.3.4: the old and the new root thresholds).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from securesystemslib.signer import Key, SSlibKey
from tuf.api.metadata import Metadata, Root

from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.keyring import key_file, public_block
from stella_trust.repository.keys import key_name, passphrase
from stella_trust.repository.metadata import Repository, generate_signer
from stella_trust.repository.outcome import Outcome
from stella_trust.repository.roles import ROLES, signatures
from stella_trust.repository.state import BAD_METADATA

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def new_staged_root(ws: Workspace, repo: Repository, now: datetime) -> Metadata[Root]:
    """A root v+1 copied from the published one, unsigned, expiring by root's own rule: every
    edit starts here, so a ceremony never carries a signature over content it changed."""
    md = Metadata[Root].from_bytes(repo.root.to_bytes())
    md.signed.version += 1
    md.signed.expires = (now + ws.rules(repo)["root"].lifetime).replace(microsecond=0)
    md.signatures.clear()
    return md


def root_edit(
    ws: Workspace,
    action: str,
    *,
    role: str,
    name: str | None = None,
    threshold: int | None = None,
    key_type: str | None = None,
    public_key: Path | None = None,
    now: datetime | None = None,
) -> Outcome:
    """add-key / revoke-key / set-threshold on the staged root (signatures start over)."""
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    now = now or utcnow()
    repo = ws.load()
    md = ws.staging.root(repo) or new_staged_root(ws, repo, now)
    had = len(md.signatures)
    root = md.signed
    if action == "add-key":
        key, label = new_key(ws, role, name, key_type, public_key)
        if key.keyid in root.roles[role].keyids:
            raise UsageError(f"that key is already a {role} key")
        root.add_key(key, role)
        message = f"staged root v{root.version}: added key {label} for {role}"
    elif action == "revoke-key":
        if not name:
            raise UsageError("revoke-key needs a key name or keyid")
        keyid = _keyid_of(ws, name, root, role)
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
    ws.staging.save_root(md)
    warnings = [f"the edit discarded {had} signature(s) on the staged root"] if had else []
    return Outcome(message + "; sign it with `trust repo sign root --key FILE`", warnings=warnings)


def new_key(
    ws: Workspace, role: str, name: str | None, key_type: str | None, public_key: Path | None
) -> tuple[Key, str]:
    """A key made here (keys/NAME.pem, encrypted), or one made elsewhere (`--public-key`).
    An existing keys/NAME.pem that no role lists (made by an add-key whose root change was
    dropped) is used again rather than refused."""
    if public_key is not None:
        public_key = ws.resolve(public_key)
        key = _public_key_of(public_key)
        ws.keys.remember(public_key.name, role, key, origin=str(public_key))
        return key, f"{key.keyid[:12]}… ({public_key.name})"
    name = name or _free_name(ws, role)
    path = ws.keys_dir / f"{name}.pem"
    if path.exists():
        key = _public_key_of(path)
        serving = _roles_listing(ws, key)
        if serving:
            raise UsageError(
                f"keys/{name}.pem exists already and serves {', '.join(serving)}",
                hint="choose another name: `trust repo root add-key --role "
                f"{role} --name {name}-2 {ws.hint_path()}`",
            )
        ws.staging.note_created(name)
        return key, f"{name} (keys/{name}.pem, made earlier and listed by no role: used again)"
    signer = generate_signer(key_type or ws.key_type())
    ws.keys.register(name, role, signer, passphrase(name, confirm=True))
    ws.staging.note_created(name)
    return signer.public_key, name


def _roles_listing(ws: Workspace, key: Key) -> list[str]:
    """Which roles of the published (and staged) root list `key`."""
    repo = Repository.load(ws.repo_dir)
    roots = [repo.root.signed]
    staged = ws.staged_dir / "root.json"
    if staged.exists():
        with contextlib.suppress(*BAD_METADATA):
            roots.append(Metadata[Root].from_file(str(staged)).signed)
    found = []
    for root in roots:
        for role in ROLES:
            if any(_same_key(key, root.keys.get(k)) for k in root.roles[role].keyids):
                found.append(f"{role} (root v{root.version})")
    return found


def _keyid_of(ws: Workspace, name: str, root: Root, role: str) -> str:
    """A keyid, a key file name or a key file path -> the keyid ROLE lists."""
    if name in root.roles[role].keyids:
        return name
    resolved = ws.resolve(Path(name))
    if resolved.is_file():  # a key file anywhere (a drive), matched by its public key
        keyid = key_file(resolved, ws.keys.index()).matching(dict(root.keys), root.roles[role].keyids)
        if keyid:
            return keyid
    for kf in ws.keys.files():
        if kf.name == name or kf.path == resolved:
            keyid = kf.matching(dict(root.keys), root.roles[role].keyids)
            if keyid:
                return keyid
    matches = [k for k in root.roles[role].keyids if k.startswith(name)]
    if len(matches) == 1 and len(name) >= 8:
        return matches[0]
    raise UsageError(
        f"{name} is not a {role} key of the staged root", hint=f"see `trust repo keys {ws.hint_path()}`"
    )


def _free_name(ws: Workspace, role: str) -> str:
    taken = set(ws.keys.index()) | {key_name(p) for p in ws.keys_dir.glob("*.pem")}
    number = 1
    while (candidate := role if number == 1 else f"{role}{number}") in taken:
        number += 1
    return candidate


def root_status(repo: Repository, md: Metadata[Root]) -> str:
    """Both thresholds a staged root must meet (TUF spec 5.3.4: the old root's, so clients
    accept the step, and its own, so it verifies itself), in one line for the operator."""
    old_have, old_need = signatures(repo, "root", md)
    new_have, new_need = signatures(repo, "root", md, root=md.signed)
    mark = {True: "met", False: "NOT met"}
    return (
        f"old root v{repo.root.signed.version} threshold {old_have}/{old_need} "
        f"{mark[old_have >= old_need]}, new root v{md.signed.version} threshold "
        f"{new_have}/{new_need} {mark[new_have >= new_need]}"
    )


def _public_key_of(path: Path) -> Key:
    from cryptography.hazmat.primitives import serialization

    try:
        pem = public_block(path.read_bytes())
        if pem is None:
            raise ValueError("no BEGIN PUBLIC KEY block")
        return SSlibKey.from_crypto(serialization.load_pem_public_key(pem))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not a PEM public key ({exc})") from exc


def _same_key(key: Key, other: Key | None) -> bool:
    return other is not None and key.keytype == other.keytype and key.keyval == other.keyval
