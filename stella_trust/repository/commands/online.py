"""The online roles: keep snapshot and timestamp fresh with only their keys at hand
(`bump-online`, the timer; `timestamp`), never the offline targets or root keys.

TUF spec 5.4/5.5: the timestamp names the snapshot and the snapshot names every targets
role, so a new snapshot always comes with a new timestamp, and either is signed again
whenever what it names changed, whatever its expiry says.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tuf.api.metadata import Metadata

from stella_trust._internal.timefmt import expiry_phrase, human_duration, iso, utcnow
from stella_trust.repository.expiry import ONLINE_ROLES, stamp_rule
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.roles import signatures

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def sign_online(ws: Workspace, repo: Repository, now: datetime) -> None:
    """New snapshot and timestamp versions (the online keys must be at hand)."""
    rules = ws.rules(repo)
    for role in ONLINE_ROLES:
        repo.signers[role] = ws.keys.require(role, repo)
    stamp_rule(repo.snapshot, rules["snapshot"])
    stamp_rule(repo.timestamp, rules["timestamp"])
    for name in repo.delegated:  # delegated roles are signed already; keep their signatures
        repo.signers.pop(name, None)
    repo.sign_snapshot_and_timestamp(now)


def online_keys_listed(ws: Workspace, repo: Repository) -> None:
    """Refuse (exit 1) when this host holds snapshot or timestamp key files that the
    served root no longer lists: it can never sign again, and saying "nothing due" would
    look healthy (a host broken into, its key rotated out: TUF spec 5.3.11)."""
    root = repo.root.signed
    for role in ONLINE_ROLES:
        if ws.keys.at_hand(role, repo):
            continue
        removed = _removed_key(ws, repo, role)
        if removed is None:
            continue
        name, keyid, version = removed
        raise RepoError(
            f"this host's {role} key {name} ({keyid[:12]}…) is no longer a {role} key: root v{version} "
            f"removed it (root v{root.version} is published), so this host cannot sign {role} any more",
            hint=f"install the new {role} key in {ws.keys_dir} (on the machine that holds it: "
            f"`trust repo export-keys DRIVE --roles {role}`, then copy DRIVE/keys/*.pem here); or retire "
            "this host: `systemctl disable --now stella-trust-bump-online.timer`",
        )


def _removed_key(ws: Workspace, repo: Repository, role: str) -> tuple[str, str, int] | None:
    """(file, keyid, root version that dropped it) for a key file here that an older root
    listed for `role` and the current one does not."""
    from tuf.api.metadata import Root as RootType

    history = [Metadata[RootType].from_bytes(data).signed for data in repo.root_history]
    for kf in ws.keys.files():
        for index in range(len(history) - 2, -1, -1):
            older = history[index]
            keyid = kf.matching(dict(older.keys), older.roles[role].keyids)
            if keyid is not None:
                return kf.path.name, keyid, older.version + 1
    return None


def resign_reasons(ws: Workspace, repo: Repository) -> dict[str, str]:
    """Why snapshot or timestamp must be signed again although not due: a version above
    them was seen (a served rollback: clients may hold it), they do not name the roles
    this workspace serves, or the current root no longer accepts their signatures."""
    reasons: dict[str, str] = {}
    snapshot, timestamp = repo.snapshot.signed, repo.timestamp.signed
    for fork in ws.pulled.online_forks if ws.pulled else []:
        role = fork.split(" ")[0]
        reasons[role] = f"another {fork} was published before (clients may hold either)"
    if snapshot.version < repo.floors.get("snapshot", 0):
        reasons["snapshot"] = (
            f"snapshot v{repo.floors['snapshot']} was published or signed before; the served "
            f"v{snapshot.version} is a rollback"
        )
    named = {"targets.json": repo.targets.signed.version}
    named.update({f"{name}.json": md.signed.version for name, md in repo.delegated.items()})
    for name, version in named.items():
        meta = snapshot.meta.get(name)
        if meta is None or meta.version != version:
            reasons.setdefault("snapshot", f"it does not name {name.removesuffix('.json')} v{version}")
    if signatures(repo, "snapshot", repo.snapshot)[0] < repo.root.signed.roles["snapshot"].threshold:
        reasons.setdefault("snapshot", f"root v{repo.root.signed.version} does not accept its signatures")
    if timestamp.version < repo.floors.get("timestamp", 0):
        reasons["timestamp"] = (
            f"timestamp v{repo.floors['timestamp']} was published or signed before; the served "
            f"v{timestamp.version} is a rollback"
        )
    if timestamp.snapshot_meta.version != snapshot.version:
        reasons.setdefault("timestamp", f"it does not name snapshot v{snapshot.version}")
    threshold = repo.root.signed.roles["timestamp"].threshold
    if signatures(repo, "timestamp", repo.timestamp)[0] < threshold:
        reasons.setdefault("timestamp", f"root v{repo.root.signed.version} does not accept its signatures")
    return reasons


def bump_online(
    ws: Workspace, now: datetime | None = None, *, force: bool = False, repo: Repository | None = None
) -> Outcome:
    """The timer: re-sign snapshot and timestamp when either is inside its refresh window,
    or when the served ones must be replaced (a rollback, a race, a root change); needs
    only the online keys (TUF spec 5.5/5.4: the timestamp names the snapshot, so a new
    snapshot always comes with a new timestamp).

    With `--from` it rebases instead of arguing: it takes the served state (verified as a
    client would, expiry excepted), drops its own unpublished timestamp and snapshot,
    takes a newer served root or targets (a fork: the served one, this workspace's kept
    aside), keeps an older served targets' newer published version (a rollback: repaired)
    and signs above every version it has seen."""
    now = now or utcnow()
    if repo is None:
        ws.rebase = True
        repo = ws.load()
    published = ws.published()
    online_keys_listed(ws, repo)
    rules = ws.rules(repo)
    reasons = resign_reasons(ws, repo)
    due = [
        role
        for role, md in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
        if force or role in reasons or rules[role].due(md.signed.expires, now)
    ]
    if not due:
        return ws.finished(
            _forks_alarm(
                ws,
                Outcome(
                    "nothing due: "
                    + "; ".join(
                        f"{role} v{md.signed.version} {expiry_phrase(md.signed.expires, now)} (renewed "
                        f"when {human_duration(rules[role].resign_within)} are left)"
                        for role, md in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
                    ),
                    details={"resigned": []},
                ),
            ),
            None,
        )
    if "snapshot" in due:
        sign_online(ws, repo, now)
    else:
        repo.signers["timestamp"] = ws.keys.require("timestamp", repo)
        stamp_rule(repo.timestamp, rules["timestamp"])
        repo.timestamp.signed.version = repo.next_version("timestamp", repo.timestamp.signed.version)
        repo.timestamp.signed.expires = (now + rules["timestamp"].lifetime).replace(microsecond=0)
        repo.sign_role(repo.timestamp)
    pushed = ws.release(repo, published)
    resigned = ["snapshot", "timestamp"] if "snapshot" in due else ["timestamp"]
    why = [f"{role}: {reasons[role]}" for role in resigned if role in reasons]
    outcome = Outcome(
        f"re-signed {' and '.join(resigned)}: "
        f"snapshot v{repo.snapshot.signed.version} {expiry_phrase(repo.snapshot.signed.expires, now)}, "
        f"timestamp v{repo.timestamp.signed.version} {expiry_phrase(repo.timestamp.signed.expires, now)}"
        + (f" (not due, but {'; '.join(why)})" if why else ""),
        warnings=ws.lifetime_warnings(repo, now),
        details={"resigned": resigned},
    )
    return ws.finished(_forks_alarm(ws, outcome), pushed)


def _forks_alarm(ws: Workspace, outcome: Outcome) -> Outcome:
    """A fork the timer settled by taking the served state still splits the fleet (clients
    that hold the other copy keep it: python-tuf re-uses an unchanged version), and only a
    new version signed by that role's keys heals it: say so, and exit 1. (Two roots with
    one version: only the root key holders can tell which chain clients must follow.)"""
    forks = ws.pulled.merge.forks if ws.pulled else []
    if not forks:
        return outcome
    roles = sorted({c.role for c in forks})
    outcome.message += "\nbut " + "; ".join(c.describe() for c in forks)
    outcome.done = False
    if "root" in roles:
        outcome.hint = (
            "two root chains were published: the root key holders must compare them "
            f"(this host took the served one; its own is in {ws.pulled.aside if ws.pulled else '?'})"
        )
    else:
        outcome.hint = (
            f"clients may hold either copy: publish a new version of {', '.join(roles)} where its key is "
            "(`trust repo publish --resign ROLE --to DIR`); this host took the published one"
        )
    return outcome


def timestamp(ws: Workspace, lifetime: timedelta | None = None, now: datetime | None = None) -> Outcome:
    """Re-sign only the timestamp (only the timestamp key), refused when the snapshot must
    change too: an expired snapshot, or one the published state no longer matches."""
    now = now or utcnow()
    ws.rebase = True
    repo = ws.load()
    published = ws.published()
    online_keys_listed(ws, repo)
    snapshot = repo.snapshot.signed
    reasons = resign_reasons(ws, repo)
    if snapshot.is_expired(now) or "snapshot" in reasons:
        cause = (
            expiry_phrase(snapshot.expires, now)
            if snapshot.is_expired(now)
            else f"must change: {reasons['snapshot']}"
        )
        raise RepoError(
            f"refused: snapshot v{snapshot.version} {cause}; a new timestamp over it would still fail "
            "every client",
            hint="run `trust repo bump-online` where the snapshot and timestamp keys are (the timer does)",
        )
    repo.signers["timestamp"] = ws.keys.require("timestamp", repo)
    expires = (now + (lifetime or repo.expiries.timestamp)).replace(microsecond=0)
    repo.timestamp.signed.version = repo.next_version("timestamp", repo.timestamp.signed.version)
    repo.timestamp.signed.expires = expires
    repo.sign_role(repo.timestamp)
    pushed = ws.release(repo, published)
    warnings = ws.lifetime_warnings(repo, now)
    if snapshot.expires < expires:
        warnings.append(
            f"snapshot v{snapshot.version} {expiry_phrase(snapshot.expires, now)}, "
            "before this timestamp: "
            "use `trust repo bump-online` to renew both"
        )
    return ws.finished(
        Outcome(f"timestamp v{repo.timestamp.signed.version} expires {iso(expires)}", warnings=warnings),
        pushed,
    )
