"""Reports for operators, which change nothing: `status` (versions, expiries, keys at hand,
what is staged), `roots` (the digest to pin clients to), `check` (each role judged by its
own rhythm, for monitoring) and `keys` (which file here serves which role).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tuf.api.metadata import Key, Metadata, Root, Targets

from stella_trust._internal.timefmt import compact_duration, expiry_phrase, human_duration, iso, utcnow
from stella_trust.repository.commands.ceremony import root_status
from stella_trust.repository.expiry import ONLINE_ROLES
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.published import verified_chain_start
from stella_trust.repository.roles import ROLES, signatures

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def status(ws: Workspace, now: datetime | None = None) -> Outcome:
    """Versions, expiries, thresholds and keys at hand per role, and what is staged (the
    root ceremony's progress included): what an operator reads before any step."""
    now = now or utcnow()
    repo = ws.load()
    lines = [f"repository {ws.repo_dir}"]
    details: dict[str, Any] = {"roles": {}, "staged": {}}
    for role, md in (
        ("root", repo.root),
        ("targets", repo.targets),
        ("snapshot", repo.snapshot),
        ("timestamp", repo.timestamp),
    ):
        signed = md.signed
        at_hand = ws.keys.at_hand(role, repo)
        threshold = repo.root.signed.roles[role].threshold
        lines.append(
            f"  {role:<9} v{signed.version}  {expiry_phrase(signed.expires, now)}  threshold "
            f"{threshold}  keys here: {', '.join(at_hand) or '-'}"
        )
        details["roles"][role] = {
            "version": signed.version,
            "expires": iso(signed.expires),
            "threshold": threshold,
            "keys_at_hand": at_hand,
        }
    try:
        staged = ws.staging.root(repo)
    except RepoError as exc:
        staged = None
        lines.append(f"staged root: {exc.message}")
        details["staged"]["root"] = {"error": exc.message}
    if staged is not None:
        text = root_status(repo, staged)
        lines.append(f"staged root v{staged.signed.version}: {text}")
        old_have, old_need = signatures(repo, "root", staged)
        new_have, new_need = signatures(repo, "root", staged, root=staged.signed)
        details["staged"]["root"] = {
            "version": staged.signed.version,
            "old_threshold": {"have": old_have, "need": old_need},
            "new_threshold": {"have": new_have, "need": new_need},
        }
    for role in ["targets", *sorted(repo.delegated)]:
        path = ws.staging.role_path(role)
        if path.exists():
            staged_role = Metadata[Targets].from_file(str(path))
            have, need = signatures(repo, role, staged_role)
            lines.append(f"staged {role} v{staged_role.signed.version}: {have}/{need} signatures")
            details["staged"][role] = {"version": staged_role.signed.version, "have": have, "need": need}
    changes = ws.staging.changes()
    if changes["add"] or changes["remove"] or changes["expiry"] or changes.get("delegate"):
        lines.append(
            f"staged changes: add {', '.join(changes['add']) or '-'}; "
            f"remove {', '.join(changes['remove']) or '-'}"
            + (f"; new lifetimes for {', '.join(changes['expiry'])}" if changes["expiry"] else "")
            + (f"; delegations {', '.join(changes['delegate'])}" if changes.get("delegate") else "")
        )
        details["staged"]["changes"] = changes
    return Outcome("\n".join(lines), details=details, warnings=ws.lifetime_warnings(repo, now))


def roots(ws: Workspace) -> Outcome:
    """The pin for clients: the oldest root from which the whole chain verifies (an older
    root that does not chain is history a mirror could have made up, never a pin)."""

    repo = ws.load()
    start = verified_chain_start(repo.root_history)
    first, current = repo.root_history[start - 1], repo.root_history[-1]
    first_sha = hashlib.sha256(first).hexdigest()
    current_sha = hashlib.sha256(current).hexdigest()
    text = (
        f"{start}.root.json sha256 {first_sha}  (pin: trust init --root-sha256 {first_sha})\n"
        f"{len(repo.root_history)}.root.json sha256 {current_sha}  (current root)"
    )
    if start > 1:
        text += f"\nroots 1..{start - 1} do not chain to the current root: never pin them"
    return Outcome(
        text,
        details={
            "first": {"version": start, "sha256": first_sha},
            "current": {"version": len(repo.root_history), "sha256": current_sha},
        },
    )


def check(
    ws: Workspace,
    within: timedelta | None = None,
    now: datetime | None = None,
    valid_at: datetime | None = None,
) -> Outcome:
    """Each role judged by its own rhythm: offline roles (root, targets, delegated) alarm
    inside `within` (default: their own re-sign window); online roles alarm when a
    re-sign was missed (half their window gone: is the timer running?); an expired role
    is called expired. `valid_at` asks the question for another moment (go-tuf
    `status --valid-at`)."""
    moment = valid_at or now or utcnow()
    repo = ws.load()
    rules = ws.rules(repo)
    roles: list[tuple[str, Any]] = [
        ("root", repo.root),
        ("targets", repo.targets),
        ("snapshot", repo.snapshot),
        ("timestamp", repo.timestamp),
    ]
    roles += list(repo.delegated.items())
    findings = []
    for role, md in roles:
        expires = md.signed.expires
        rule = rules[role]
        online = role in ONLINE_ROLES
        window = rule.resign_within if online or within is None else within
        if expires <= moment:
            state, advice = (
                "expired",
                (
                    "every client refuses it: `trust repo bump-online` now"
                    if online
                    else f"every client refuses it: re-sign {role} now"
                ),
            )
        elif online and rule.missed(expires, moment):
            state, advice = (
                "missed",
                (
                    f"a re-sign was missed: bump-online renews it when "
                    f"{human_duration(rule.resign_within)} "
                    "are left (is the timer running?)"
                ),
            )
        elif not online and expires - moment <= window:
            state, advice = (
                "expiring",
                (
                    "a root ceremony: `trust repo set-expiry root 365d`, sign, commit"
                    if role == "root"
                    else f"re-sign it: `trust repo publish --resign {role}` where the {role} key is"
                ),
            )
        else:
            state, advice = "ok", ""
        findings.append(
            {
                "role": role,
                "version": md.signed.version,
                "expires": iso(expires),
                "state": state,
                "online": online,
                "window": compact_duration(window),
                "summary": f"{role} v{md.signed.version} {expiry_phrase(expires, moment)}",
                "advice": advice,
            }
        )
    problems = [f for f in findings if f["state"] != "ok"]
    hint = "each line above says what to do; `trust repo check` changes nothing"
    lines = [
        f"{'ok' if f['state'] == 'ok' else f['state'].upper():<8} {f['summary']}"
        + (f": {f['advice']}" if f["advice"] else "")
        for f in findings
    ]
    head = (f"{len(problems)} role(s) need attention" if problems else "all roles within their rhythm") + (
        f" (at {iso(moment)})" if valid_at else ""
    )
    return Outcome(
        "\n".join([head, *lines]),
        done=not problems,
        hint=hint,
        details={"roles": findings, "problems": len(problems)},
    )


@dataclass
class _KeyUse:
    """One key some role lists: the roles that list it and the file here that holds it."""

    keyid: str
    key: Key
    roles: list[str] = field(default_factory=list)
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `keys` row (`--json` details.keys[]): the key itself is shown by its scheme only."""
        return {"keyid": self.keyid, "scheme": self.key.scheme, "roles": self.roles, "file": self.file}


def keys(ws: Workspace) -> Outcome:
    """Which key serves which role, and which file here holds it (go-tuf `root-keys`)."""
    repo = ws.load()
    staged = ws.staging.root(repo)
    sources: list[tuple[str, Root]] = [(f"root v{repo.root.signed.version}", repo.root.signed)]
    if staged is not None:
        sources.append((f"staged root v{staged.signed.version}", staged.signed))
    entries: dict[str, _KeyUse] = {}

    def listed(keyid: str, key: Key, by: str) -> None:
        """Note that `by` lists the key (the first listing's key object is the one kept)."""
        entries.setdefault(keyid, _KeyUse(keyid, key)).roles.append(by)

    for label, root in sources:
        for role in ROLES:
            for keyid in root.roles[role].keyids:
                listed(keyid, root.keys[keyid], f"{role} ({label})")
    delegations = repo.targets.signed.delegations
    if delegations is not None:
        for name, delegated in (delegations.roles or {}).items():
            for keyid in delegated.keyids:
                listed(keyid, delegations.keys[keyid], f"{name} (delegated by targets)")
    unused = []
    for kf in ws.keys.files():
        for keyid, entry in entries.items():
            if entry.file is None and kf.is_key(keyid, entry.key):
                entry.file = (
                    str(kf.path.relative_to(ws.path)) if kf.path.is_relative_to(ws.path) else str(kf.path)
                )
                break
        else:
            unused.append(kf.path.name)
    rows = [entry.to_json() for entry in entries.values()]
    lines = [f"{r['keyid'][:16]}  {r['file'] or '-':<24} {', '.join(r['roles'])}" for r in rows]
    if unused:
        lines.append(f"key files no role lists: {', '.join(unused)}")
    return Outcome("\n".join(lines), details={"keys": rows, "unused_files": unused})
