"""`commit`: a root change and the roles it invalidates, published as one set.

A new root can make the published targets, snapshot or timestamp unacceptable (new keys,
a new threshold). Clients would then refuse the repository until each is signed again,
so the staged root is published only together with every such role, re-signed with the
keys here; when some of those keys are held elsewhere, the root and the roles signed so
far are staged as one set (`staged/ceremony.json`) and the machine holding the rest
completes it. Nothing is written unless a client starting from the published root
accepts the whole set.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.commands.ceremony import root_status
from stella_trust.repository.expiry import stamp_rule
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.roles import ROLES, signatures
from stella_trust.repository.staging import CREATED_FILE, NEXT, SET_FILE

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def commit(ws: Workspace, now: datetime | None = None) -> Outcome:
    """Publish the staged root when both root thresholds are met, together with every
    role the new root no longer accepts, re-signed with the keys here. When some of those
    keys are held elsewhere (an offline targets key beside the CI's online one; a new
    timestamp key made on the online host), the root and those roles are staged as one
    set and nothing is published: the machine holding the remaining keys completes it
    with `commit` (or `publish`). Refused (nothing written) when a client would reject
    the result."""
    now = now or utcnow()
    repo = ws.load()
    published = ws.published()
    md = ws.staging.root(repo)
    if md is None:
        raise UsageError(
            "no staged root to commit",
            hint=f"`trust repo status {ws.hint_path()}` shows what is staged",
        )
    try:
        repo.root.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
    except UnsignedMetadataError:
        raise RepoError(
            f"commit refused: {root_status(repo, md)}",
            hint="collect more signatures with `trust repo sign root --key FILE` "
            "(on the machines holding the root keys, carrying staged/root.json)",
        ) from None
    old_root = repo.root.signed
    repo.root = md
    repo.record_root()
    resigned, missing = _complete_set(ws, repo, md.signed, now)
    if missing:
        _save_set(ws, repo, md.signed.version, resigned)
        where = "; ".join(missing)
        return Outcome(
            f"staged root v{md.signed.version} with {', '.join(resigned) or 'no other role'} as one "
            f"change; nothing was published. Still needed: {where}. Carry staged/ to the machine that "
            "holds them and run `trust repo commit` there (`--to DIR` publishes)",
            done=False,
            hint="carry staged/ to that machine; nothing was published until the whole change verifies",
            details={"staged_set": {"root": md.signed.version, "roles": resigned, "missing": missing}},
        )
    pushed = ws.release(repo, published)
    _drop_set(ws)
    retired = _retire_keys(ws, old_root, md.signed)
    message = f"committed root v{md.signed.version}"
    if resigned:
        message += f"; re-signed {', '.join(resigned)} for it"
    warnings = ws.lifetime_warnings(repo, now)
    if retired:
        warnings.append(
            f"moved {', '.join(retired)} to {ws.keys_dir / 'retired'}: "
            "destroy them when clients have moved on"
        )
    for role in ("snapshot", "timestamp"):
        new = set(md.signed.roles[role].keyids) - set(old_root.roles[role].keyids)
        here = [kf.path.name for kf in ws.keys.files() if kf.matching(dict(md.signed.keys), new)]
        if new and here:
            warnings.append(
                f"the new {role} key is {', '.join(here)} here: the online host needs it now "
                f"(`trust repo export-keys DRIVE --roles {role} {ws.hint_path()}`, then into its keys/)"
            )
    return ws.finished(
        Outcome(message, warnings=warnings, details={"root": md.signed.version, "resigned": resigned}),
        pushed,
    )


def _complete_set(ws: Workspace, repo: Repository, root: Root, now: datetime) -> tuple[list[str], list[str]]:
    """Re-sign, with the keys here, every role `root` no longer accepts, taking what other
    machines already signed from the staged set. Returns (roles signed or staged, what is
    still missing: role, keys and where they are held)."""
    staged_set = ws.staging.ceremony_set()
    resigned: list[str] = []
    missing: list[str] = []
    rules = ws.rules(repo)
    targets_changed = False
    have, need = signatures(repo, "targets", repo.targets, root=root)
    if have < need:
        targets = _set_targets(ws, repo, staged_set, now)
        for signer in ws.keys.signers("targets", repo, root=root):
            if signer.public_key.keyid not in targets.signatures:
                targets.sign(signer, append=True)
        repo.targets = targets
        targets_changed = True
        resigned.append(f"targets v{targets.signed.version}")
        have, need = signatures(repo, "targets", targets, root=root)
        if have < need:
            missing.append(
                f"targets v{targets.signed.version} has {have} of {need} signatures under root "
                f"v{root.version}: {ws.keys.missing(repo, 'targets', targets, root)}"
            )

    def accepted(role: str) -> bool:
        md = repo.role_metadata(role)
        return signatures(repo, role, md, root=root)[0] >= root.roles[role].threshold

    snapshot_needed = targets_changed or not accepted("snapshot")
    timestamp_needed = snapshot_needed or not accepted("timestamp")
    for name in repo.delegated:
        repo.signers.pop(name, None)
    snapshot_ready = not snapshot_needed
    if snapshot_needed:
        signers = ws.keys.signers("snapshot", repo, root=root)
        staged = _set_online(ws, repo, "snapshot", staged_set, root)
        if len(signers) >= root.roles["snapshot"].threshold:
            repo.signers["snapshot"] = signers
            stamp_rule(repo.snapshot, rules["snapshot"])
            repo._sign_snapshot_only(now)
            snapshot_ready = True
        elif staged is not None:
            repo.snapshot = staged
            snapshot_ready = True
        else:
            missing.append(f"snapshot: {ws.keys.missing(repo, 'snapshot', Metadata(Snapshot()), root)}")
        if snapshot_ready:
            resigned.append(f"snapshot v{repo.snapshot.signed.version}")
    if timestamp_needed:
        signers = ws.keys.signers("timestamp", repo, root=root)
        staged_ts = _set_online(ws, repo, "timestamp", staged_set, root)
        if snapshot_ready and len(signers) >= root.roles["timestamp"].threshold:
            repo.signers["timestamp"] = signers
            stamp_rule(repo.timestamp, rules["timestamp"])
            repo._sign_timestamp_only(now)
            resigned.append(f"timestamp v{repo.timestamp.signed.version}")
        elif staged_ts is not None and snapshot_ready:
            repo.timestamp = staged_ts
            resigned.append(f"timestamp v{repo.timestamp.signed.version}")
        elif len(signers) < root.roles["timestamp"].threshold:
            missing.append(f"timestamp: {ws.keys.missing(repo, 'timestamp', Metadata(Timestamp()), root)}")
    return resigned, missing


def _set_targets(
    ws: Workspace, repo: Repository, staged_set: dict[str, Any], now: datetime
) -> Metadata[Targets]:
    """The targets of the set: the one another machine staged with it (its signatures
    kept), else the published one at a new version above every version seen."""
    staged = ws.staging.role("targets")
    if staged is not None:
        listed = staged_set.get("roles", {}).get("targets")
        if listed != staged.signed.version:
            raise RepoError(
                f"a release is staged (staged/targets.json v{staged.signed.version}) beside the root "
                "change, and the root change needs targets re-signed",
                hint=f"publish the release first: `trust repo publish {ws.hint_path()}` (then commit)",
            )
        floor = max(repo.targets.signed.version, repo.floors.get("targets", 0))
        if staged.signed.version > floor:
            return staged
        ws.staging.drop_role("targets")  # stale: published since; sign the published one again
    md = Metadata[Targets].from_bytes(repo.targets.to_bytes())
    md.signed.version = repo.next_version("targets", md.signed.version)
    md.signed.expires = (now + ws.rules(repo)["targets"].lifetime).replace(microsecond=0)
    md.signatures.clear()
    return md


def _set_online(
    ws: Workspace, repo: Repository, role: str, staged_set: dict[str, Any], root: Root
) -> Metadata[Any] | None:
    """A snapshot or timestamp another machine signed for this set, if it still names what
    the set publishes (a snapshot: these targets versions; a timestamp: this snapshot)."""
    path = ws.staged_dir / f"{role}.json"
    if not path.exists() or staged_set.get("roles", {}).get(role) is None:
        return None
    md: Metadata[Any] = Metadata.from_file(str(path))
    if signatures(repo, role, md, root=root)[0] < root.roles[role].threshold:
        return None
    if md.signed.version <= repo.floors.get(role, 0):
        return None
    if role == "snapshot":
        named = {"targets.json": repo.targets.signed.version}
        named.update({f"{n}.json": d.signed.version for n, d in repo.delegated.items()})
        if any(md.signed.meta.get(n) is None or md.signed.meta[n].version != v for n, v in named.items()):
            return None
    else:
        data = repo._bytes_of("snapshot", repo.snapshot, JSONSerializer(compact=False))
        try:
            md.signed.snapshot_meta.verify_length_and_hashes(data)
        except Exception:
            return None
    return md


def _save_set(ws: Workspace, repo: Repository, root_version: int, resigned: list[str]) -> None:
    """staged/: root.json (signed), targets.json (with the signatures so far), snapshot.json
    and timestamp.json when signed here, and ceremony.json naming the set."""
    roles: dict[str, int] = {}
    serializer = JSONSerializer(compact=False)
    for text in resigned:
        role, _, version = text.partition(" v")
        roles[role] = int(version)
        md = repo.role_metadata(role)
        path = ws.staging.role_path(role) if role == "targets" else ws.staged_dir / f"{role}.json"
        atomic_write(path, md.to_bytes(serializer))
    document = {"root": root_version, "roles": roles}
    atomic_write(ws.staged_dir / SET_FILE, json.dumps(document, indent=2).encode() + b"\n")


def _drop_set(ws: Workspace) -> None:
    if "targets" in ws.staging.ceremony_set().get("roles", {}):
        ws.staging.drop_role("targets")
    for name in ("root.json", SET_FILE, "snapshot.json", "timestamp.json", CREATED_FILE):
        (ws.staged_dir / name).unlink(missing_ok=True)


def _retire_keys(ws: Workspace, old_root: Root, new_root: Root) -> list[str]:
    """Key files whose key the old root listed and the new root does not are moved to
    keys/retired/; a rotation's `NAME.next.pem` then takes its old name."""
    retired: list[str] = []
    new_keyids = {k for role in ROLES for k in new_root.roles[role].keyids}
    old_keyids = {k for role in ROLES for k in old_root.roles[role].keyids}
    for kf in ws.keys.files():
        gone = kf.matching(dict(old_root.keys), old_keyids - new_keyids)
        if gone is None:
            continue
        (ws.keys_dir / "retired").mkdir(exist_ok=True)
        os.replace(kf.path, ws.keys_dir / "retired" / f"{kf.name}-{gone[:12]}.pem")
        retired.append(kf.path.name)
    for kf in ws.keys.files():
        keyid = kf.matching(dict(new_root.keys), new_keyids) if kf.name.endswith(NEXT) else None
        if keyid is None:
            continue
        final = ws.keys_dir / f"{kf.name.removesuffix(NEXT)}.pem"
        if not final.exists():
            os.replace(kf.path, final)
            role = next(r for r in ROLES if keyid in new_root.roles[r].keyids)
            ws.keys.remember(final.stem, role, new_root.keys[keyid])
            ws.keys.forget(kf.name)
    return retired
