"""What an operator stages for the next publication: targets added and removed
(`add-target`, `remove-target`), delegations (`delegate`) and new lifetimes
(`set-expiry`), and `clean`, which drops them. Staging writes only `staged/`; `publish`
signs it, where the keys are.

Each edit drops the staged role file it invalidates: signatures collected over the old
content would not count, and keeping them would say otherwise.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.commands.ceremony import new_key, new_staged_root
from stella_trust.repository.commands.online import bump_online
from stella_trust.repository.commands.publish import published_names
from stella_trust.repository.expiry import FIELD, ExpiryRule, stamp_rule
from stella_trust.repository.keys import KEY_NAME
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome
from stella_trust.repository.roles import ROLES, role_keys
from stella_trust.repository.staging import CREATED_FILE, NEXT, SET_FILE, read_json

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def _delegate_for(ws: Workspace, repo: Repository, name: str, role: str | None) -> str:
    """The role that signs `name`: `--role`, else the delegated role whose paths match it."""
    delegations = repo.targets.signed.delegations
    roles = (delegations.roles or {}) if delegations else {}
    if role is not None:
        if role != "targets" and role not in roles:
            raise UsageError(f"no role {role!r}", hint="create it with `trust repo delegate`")
        if role != "targets" and not roles[role].is_delegated_path(name):
            raise UsageError(f"role {role!r} is not delegated {name!r} (its paths: {roles[role].paths})")
        return role
    # a releaser's machine: the delegated role whose paths match and whose key is here
    for candidate, delegated in roles.items():
        if delegated.is_delegated_path(name) and ws.keys.at_hand(candidate, repo):
            return str(candidate)
    return "targets"


def add_target(
    ws: Workspace, file: Path, name: str | None, custom: dict[str, Any] | None, role: str | None = None
) -> Outcome:
    """Stage a target (added or replaced) for the role that signs it: `--role`, else the
    delegated role whose paths match and whose key is here, else targets."""
    repo = ws.load()
    name = name or file.name
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise UsageError(f"target name {name!r} is not a clean relative name")
    signing_role = _delegate_for(ws, repo, name, role)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from exc
    atomic_write(ws.staging.target_file(name), data)
    changes = ws.staging.changes()
    changes["add"][name] = {"custom": custom, "role": signing_role}
    changes["remove"] = [n for n in changes["remove"] if n != name]
    ws.staging.save_changes(changes)
    ws.staging.drop_role(signing_role)
    return Outcome(f"staged {name} ({len(data)} bytes) for {signing_role}; run `trust repo publish`")


def remove_target(ws: Workspace, name: str) -> Outcome:
    """Stage a target's removal; a unique file name is enough (`rekor.pub` for
    `keys/rekor.pub`), an ambiguous one is refused with the candidates."""
    repo = ws.load()
    changes = ws.staging.changes()
    published = published_names(repo)
    known = set(published) | set(changes["add"])
    if name not in known:
        matches = sorted(n for n in known if n.rsplit("/", 1)[-1] == name or n.endswith("/" + name))
        if len(matches) > 1:
            raise UsageError(
                f"{name!r} matches {len(matches)} targets: {', '.join(matches)}; give the full name"
            )
        if not matches:
            raise UsageError(
                f"Unknown target {name!r}: neither published nor staged", hint="see `trust repo status`"
            )
        name = matches[0]
    role = changes["add"].pop(name, {}).get("role") or published.get(name, "targets")
    ws.staging.target_file(name).unlink(missing_ok=True)
    if name in published and not any(r.get("name") == name for r in changes["remove"] if isinstance(r, dict)):
        changes["remove"] = [r for r in changes["remove"] if r != name] + [name]
    ws.staging.save_changes(changes)
    ws.staging.drop_role(published.get(name, role))
    return Outcome(f"staged removal of {name}; run `trust repo publish`")


def delegate(ws: Workspace, name: str, paths: list[str], public_keys: list[Path], threshold: int) -> Outcome:
    """Stage a delegation from targets: NAME signs only PATHS, with its own keys
    (a releaser's, made on their machine); published with the next targets."""
    repo = ws.load()
    if name in ROLES or not KEY_NAME.fullmatch(name) or name.split(".", 1)[0].isdigit():
        raise UsageError(
            f"{name!r} cannot name a delegated role", hint="letters, digits, '-' and '_'; not a role name"
        )
    if not paths:
        raise UsageError("--paths needs at least one pattern, e.g. 'releases/*'")
    if not 1 <= threshold <= len(public_keys):
        raise UsageError("--threshold must be between 1 and the number of --key files")
    keys = [
        {"keyid": key.keyid, **key.to_dict()}
        for key in (new_key(ws, "targets", None, None, path)[0] for path in public_keys)
    ]
    changes = ws.staging.changes()
    changes.setdefault("delegate", {})[name] = {"paths": paths, "keys": keys, "threshold": threshold}
    ws.staging.save_changes(changes)
    ws.staging.drop_role("targets")
    del repo
    return Outcome(
        f"staged delegation {name}: paths {', '.join(paths)}, threshold {threshold} of "
        f"{len(keys)} key(s); run `trust repo publish` where the targets key is"
    )


def set_expiry(ws: Workspace, role: str, rule: ExpiryRule, now: datetime | None = None) -> Outcome:
    """Change a role's rhythm: online roles are re-signed now; targets and delegated roles
    take it at their next publication; root in the staged root (the next ceremony)."""
    now = now or utcnow()
    repo = ws.load()
    if role in ("snapshot", "timestamp"):
        md = repo.snapshot if role == "snapshot" else repo.timestamp
        stamp_rule(md, rule)
        outcome = bump_online(ws, now, force=True, repo=repo)
        return Outcome(
            f"{role} lifetime {rule.field()['lifetime']}, renewed when "
            f"{rule.field()['resign-within']} are left; {outcome.message}",
            warnings=outcome.warnings,
        )
    if role == "root":
        md_root = ws.staging.root(repo) or new_staged_root(ws, repo, now)
        had = len(md_root.signatures)
        md_root.signed.unrecognized_fields[FIELD] = rule.field()
        md_root.signed.expires = (now + rule.lifetime).replace(microsecond=0)
        md_root.signatures.clear()
        ws.staging.save_root(md_root)
        return Outcome(
            f"staged root v{md_root.signed.version}: lifetime {rule.field()['lifetime']} (expires "
            f"{md_root.signed.expires:%Y-%m-%d}); sign it with `trust repo sign root --key FILE`",
            warnings=[f"the edit discarded {had} signature(s) on the staged root"] if had else [],
        )
    role_keys(repo, role)  # refuses an unknown role
    changes = ws.staging.changes()
    changes["expiry"][role] = {
        "lifetime": rule.lifetime.total_seconds(),
        "resign_within": rule.resign_within.total_seconds(),
    }
    ws.staging.save_changes(changes)
    ws.staging.drop_role(role)
    return Outcome(
        f"staged: {role} lifetime {rule.field()['lifetime']} from its next publication; "
        "run `trust repo publish` where its key is"
    )


def clean(ws: Workspace) -> Outcome:
    """Drop staged state (root under ceremony, the roles staged with it, staged roles,
    target changes). `.next` keys of an abandoned rotation move to keys/retired/ (keys are
    never deleted; a new rotation makes new ones). A key file `root add-key` made is kept
    where it is: the same add-key uses it again (it may also be the key of a change
    another machine completed, so it is never moved on a guess)."""
    staged_dir, keys_dir = ws.staged_dir, ws.keys_dir
    created = read_json(staged_dir / CREATED_FILE).get("keys", [])
    names = ("root.json", "targets.json", "changes.json", SET_FILE, "snapshot.json", "timestamp.json")
    dropped = [name for name in names if (staged_dir / name).exists()]
    dropped += [f"roles/{p.name}" for p in (staged_dir / "roles").glob("*.json")]
    for name in (*names, CREATED_FILE):
        (staged_dir / name).unlink(missing_ok=True)
    shutil.rmtree(staged_dir / "roles", ignore_errors=True)
    shutil.rmtree(staged_dir / "targets", ignore_errors=True)
    (staged_dir / "targets").mkdir(parents=True, exist_ok=True)
    for kf in ws.keys.files():
        if not kf.name.endswith(NEXT):
            continue
        (keys_dir / "retired").mkdir(exist_ok=True)
        target = keys_dir / "retired" / kf.path.name
        if target.exists():
            target = keys_dir / "retired" / f"{kf.name}-{utcnow():%Y%m%dT%H%M%S}.pem"
        os.replace(kf.path, target)
        ws.keys.forget(kf.name)
        dropped.append(f"keys/{kf.path.name} (to keys/retired/)")
    kept = [name for name in created if (keys_dir / f"{name}.pem").exists()]
    message = f"dropped staged {', '.join(dropped)}" if dropped else "nothing was staged"
    if kept:
        message += (
            f"; kept {', '.join(f'keys/{n}.pem' for n in kept)} (made for the dropped change: "
            "`trust repo root add-key --name NAME` uses it again)"
        )
    return Outcome(message, details={"dropped": dropped, "kept_keys": kept})
