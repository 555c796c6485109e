"""`publish`: sign the changed targets roles (top-level and delegated) with the keys at
hand, then snapshot and timestamp over them, and release the result only when every role
meets its threshold and a client starting from the published root accepts it. Below a
threshold the signed role is staged for the other key holders instead (nothing published).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tuf.api.metadata import DelegatedRole, Delegations, Key, Metadata, TargetFile, Targets

from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.commands.commit import commit
from stella_trust.repository.commands.online import sign_online
from stella_trust.repository.expiry import ONLINE_ROLES, ExpiryRule, default_rule, stamp_rule
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.roles import role_keys, signatures

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace

NOTHING_STAGED_HINT = (
    "stage a change first (`trust repo add-target` / `remove-target`), or re-sign an unchanged "
    "role with `trust repo publish --resign targets`; the online roles renew with `trust repo bump-online`"
)


def published_names(repo: Repository) -> dict[str, str]:
    """target name -> role that lists it."""
    names = {name: "targets" for name in repo.targets.signed.targets}
    for role, md in repo.delegated.items():
        names.update({name: role for name in md.signed.targets})
    return names


def _changed_roles(ws: Workspace, repo: Repository, changes: dict[str, Any]) -> set[str]:
    published = published_names(repo)
    roles = {str(change.get("role") or "targets") for change in changes["add"].values()}
    roles |= {published.get(name, "targets") for name in changes["remove"]}
    roles |= {role for role in changes["expiry"] if role not in ONLINE_ROLES and role != "root"}
    if changes.get("delegate"):
        roles.add("targets")
    roles |= {role for role in [*repo.delegated, "targets"] if ws.staging.role_path(role).exists()}
    return roles


def _staged_role(
    ws: Workspace, repo: Repository, role: str, changes: dict[str, Any], now: datetime
) -> Metadata[Targets]:
    staged = ws.staging.role(role, then=", then stage the change again")
    if staged is not None:
        published = repo.targets if role == "targets" else repo.delegated.get(role)
        published_version = published.signed.version if published else 0
        floor = max(published_version, repo.floors.get(role, 0))
        if staged.signed.version <= floor:
            raise RepoError(
                f"staged {role} v{staged.signed.version} is stale: {role} v{floor} is published or was "
                "signed since; its signatures cannot be used",
                hint=f"drop it and stage the change again: `trust repo clean {ws.hint_path()}`",
            )
        return staged
    if role == "targets" or role in repo.delegated:
        current = repo.targets if role == "targets" else repo.delegated[role]
        md = Metadata[Targets].from_bytes(current.to_bytes())
    else:  # the first publication of a delegated role: v1 (or above a version seen)
        md = Metadata(Targets(version=1, expires=now))
        md.signed.version = 0
    for name, change in changes["add"].items():
        if (change.get("role") or "targets") != role:
            continue
        info = TargetFile.from_data(name, ws.staging.target_file(name).read_bytes(), ["sha256"])
        if change.get("custom") is not None:
            info.unrecognized_fields["custom"] = change["custom"]
        md.signed.targets[name] = info
    for name in changes["remove"]:
        md.signed.targets.pop(name, None)
    if role == "targets":
        _apply_delegations(md.signed, changes.get("delegate", {}))
    rule = ws.rules(repo).get(role) or default_rule("targets")
    if role in changes["expiry"]:
        rule = ExpiryRule(**{k: timedelta(seconds=v) for k, v in changes["expiry"][role].items()})
    stamp_rule(md, rule)
    md.signed.version = repo.next_version(role, md.signed.version)
    md.signed.expires = (now + rule.lifetime).replace(microsecond=0)
    md.signatures.clear()
    return md


def publish(ws: Workspace, now: datetime | None = None, *, resign: list[str] | None = None) -> Outcome:
    """Sign the changed targets roles with the keys at hand; publish only when every one
    meets its threshold (and a client accepts the result). A root change staged as a set
    by another machine (repository/ceremony.py) is completed here like `commit`."""
    now = now or utcnow()
    if (ws.staged_dir / "root.json").exists() and ws.staging.ceremony_set():
        return commit(ws, now)
    repo = ws.load()
    published = ws.published()
    changes = ws.staging.changes()
    roles = _changed_roles(ws, repo, changes)
    for role in resign or []:
        if role != "targets":
            role_keys(repo, role)  # refuses a role this repository does not have
        roles.add(role)
    if not roles:
        raise UsageError("nothing staged to publish", hint=NOTHING_STAGED_HINT)
    short: dict[str, tuple[int, int]] = {}
    signed: dict[str, Metadata[Targets]] = {}
    for role in sorted(roles):
        md = _staged_role(ws, repo, role, changes, now)
        for signer in ws.keys.signers(role, repo):
            if signer.public_key.keyid not in md.signatures:
                md.sign(signer, append=True)
        have, threshold = signatures(repo, role, md)
        if have < threshold:
            ws.staging.save_role(role, md)
            short[role] = (have, threshold)
        signed[role] = md
    if short:
        text = "; ".join(
            f"{role} v{signed[role].signed.version}: {h} of {n} signatures" for role, (h, n) in short.items()
        )
        missing = "; ".join(ws.keys.missing(repo, role, signed[role]) for role in short)
        return Outcome(
            f"{text}; staged, not published. Still needed: {missing}. Add one with "
            "`trust repo sign ROLE --key FILE` (on the machine holding it, carrying staged/), then "
            "`trust repo publish` here",
            done=False,
            hint="carry staged/ to the key holder and back; nothing was published",
            details={"staged": {role: {"have": h, "need": n} for role, (h, n) in short.items()}},
        )
    online_short = [
        role for role in ONLINE_ROLES if len(ws.keys.signers(role, repo)) < role_keys(repo, role)[2]
    ]
    if online_short:
        for role, md in signed.items():
            ws.staging.save_role(role, md)
        return Outcome(
            f"signed {', '.join(sorted(signed))} at threshold; {' and '.join(online_short)} key(s) are "
            "not here, so nothing was published. Carry staged/ to the online host and run "
            "`trust repo publish` there",
            done=False,
            hint="carry staged/ to the host with the snapshot and timestamp keys; nothing was published",
            details={"staged": {role: {"complete": True} for role in signed}},
        )
    for role, md in signed.items():
        if role == "targets":
            repo.targets = md
        else:
            repo.delegated[role] = md
    for name in changes["add"]:
        repo.target_data[name] = ws.staging.target_file(name).read_bytes()
    sign_online(ws, repo, now)
    pushed = ws.release(repo, published)  # every listed target checked as it will be served
    ws.staging.clear_changes()
    versions = ", ".join(f"{role} v{md.signed.version}" for role, md in sorted(signed.items()))
    return ws.finished(
        Outcome(
            f"published {versions}, snapshot v{repo.snapshot.signed.version}, "
            f"timestamp v{repo.timestamp.signed.version}",
            warnings=ws.lifetime_warnings(repo, now),
            details={"versions": {role: md.signed.version for role, md in signed.items()}},
        ),
        pushed,
    )


def _apply_delegations(targets: Targets, delegations: dict[str, Any]) -> None:
    """Staged `trust repo delegate` entries -> delegations in the new targets version
    (TUF spec 5.6.7: a terminating delegation, so paths are not searched past it)."""

    for name, entry in delegations.items():
        if targets.delegations is None:
            targets.delegations = Delegations(keys={}, roles={})
        assert targets.delegations.roles is not None
        keyids = []
        for key_dict in entry["keys"]:
            data = dict(key_dict)
            keyid = data.pop("keyid")
            targets.delegations.keys[keyid] = Key.from_dict(keyid, data)
            keyids.append(keyid)
        targets.delegations.roles[name] = DelegatedRole(
            name=name,
            keyids=keyids,
            threshold=int(entry["threshold"]),
            terminating=True,
            paths=list(entry["paths"]),
        )
