"""Signatures on staged roles: one key file at a time (`sign`), or made elsewhere over the
canonical bytes (`payload`, then `add-signature`: a hardware key). Each is refused unless
the role lists the key and, for a signature made elsewhere, unless it verifies: exit 0
must mean the signature counts.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import Signature
from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust.errors import UsageError
from stella_trust.repository.commands.ceremony import root_status
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.roles import role_keys, signatures

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def _staged_for_signing(ws: Workspace, role: str, repo: Repository) -> tuple[Path, Metadata[Any], Any]:
    """(file, metadata, delegator) of what `sign ROLE` / `payload ROLE` act on."""
    if role == "root":
        md = ws.staging.root(repo)
        if md is None:
            raise UsageError(
                "no staged root to sign",
                hint="stage a change first: `trust repo root add-key|revoke-key|set-threshold`, "
                "`trust repo set-expiry root 365d` or `trust repo rotate ROLE`",
            )
        return ws.staged_dir / "root.json", md, None
    if role in ("snapshot", "timestamp"):
        raise UsageError(f"{role} is an online role: `trust repo bump-online` signs it")
    role_keys(repo, role)
    path = ws.staging.role_path(role)
    if not path.exists():
        raise UsageError(
            f"no staged {role} to sign", hint="run `trust repo publish` first (it stages below threshold)"
        )
    return (
        path,
        Metadata[Targets].from_file(str(path)),
        repo.targets.signed if role != "targets" else None,
    )


def sign(ws: Workspace, role: str, key_file: Path, now: datetime | None = None) -> Outcome:
    """Add one signature to the staged root, targets or delegated role with one key file;
    refused when the role does not list the key (the signature would not count)."""
    key_file = ws.resolve(key_file)
    repo = ws.load()
    path, md, _ = _staged_for_signing(ws, role, repo)
    if role == "root":
        keys = {**repo.root.signed.keys, **md.signed.keys}
        keyids = list(
            dict.fromkeys([*repo.root.signed.roles["root"].keyids, *md.signed.roles["root"].keyids])
        )
        signer = ws.keys.signer_from_file(
            key_file, keys, keyids, f"root v{repo.root.signed.version} or the staged root"
        )
        md.sign(signer, append=True)
        ws.staging.save_root(md)
        status = root_status(repo, md)
        return Outcome(f"signed staged root v{md.signed.version} with {key_file.name}; {status}")
    keys, keyids, _ = role_keys(repo, role)
    signer = ws.keys.signer_from_file(key_file, keys, keyids, role)
    md.sign(signer, append=True)
    atomic_write(path, md.to_bytes(JSONSerializer(compact=False)))
    have, need = signatures(repo, role, md)
    return Outcome(f"signed staged {role} with {key_file.name}: {have} of {need} signatures")


def payload(ws: Workspace, role: str) -> bytes:
    """The canonical bytes a hardware key signs for the staged ROLE (go-tuf `payload`)."""
    repo = ws.load()
    _, md, _ = _staged_for_signing(ws, role, repo)
    return bytes(md.signed_bytes)


def add_signature(ws: Workspace, role: str, keyid: str, signature: bytes) -> Outcome:
    """Add a signature made elsewhere; verified against the key before it is kept."""
    repo = ws.load()
    path, md, _ = _staged_for_signing(ws, role, repo)
    if role == "root":
        keys = {**repo.root.signed.keys, **md.signed.keys}
        listed = {*repo.root.signed.roles["root"].keyids, *md.signed.roles["root"].keyids}
    else:
        all_keys, keyids, _ = role_keys(repo, role)
        keys, listed = all_keys, set(keyids)
    matches = [k for k in listed if k == keyid or (len(keyid) >= 8 and k.startswith(keyid))]
    if len(matches) != 1:
        raise RepoError(f"refused: {keyid} is not a key {role} lists", hint="see `trust repo keys`")
    keyid = matches[0]
    text = signature.strip()
    try:
        sig_hex = bytes.fromhex(text.decode()).hex() if _is_hex(text) else signature.hex()
    except ValueError:
        sig_hex = signature.hex()
    sig = Signature(keyid, sig_hex)
    try:
        keys[keyid].verify_signature(sig, md.signed_bytes)
    except Exception as exc:
        raise RepoError(
            f"refused: the signature does not verify with key {keyid[:12]}… over `trust repo payload {role}`",
            hint="sign exactly the bytes `trust repo payload` writes",
        ) from exc
    md.signatures[keyid] = sig
    if role == "root":
        ws.staging.save_root(md)
        return Outcome(f"added signature {keyid[:12]}…; {root_status(repo, md)}")
    atomic_write(path, md.to_bytes(JSONSerializer(compact=False)))
    have, need = signatures(repo, role, md)
    return Outcome(f"added signature {keyid[:12]}… to staged {role}: {have} of {need}")


def _is_hex(text: bytes) -> bool:
    try:
        text.decode("ascii")
    except UnicodeDecodeError:
        return False
    return len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text)
