"""Publishing: stage target changes, sign targets (and delegated roles) at threshold, and
keep the online roles fresh without the offline keys (`bump-online`)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import parse

from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import expiry_phrase, human_duration, iso, utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.expiry import ONLINE_ROLES, ExpiryRule, default_rule, stamp_rule
from stella_trust.repository.metadata import Repository, signed_by
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.workspace import BAD_METADATA, WorkspaceBase

SET_FILE = "ceremony.json"  # staged/ceremony.json: the roles staged with a root change, as one set
NOTHING_STAGED_HINT = (
    "stage a change first (`trust repo add-target` / `remove-target`), or re-sign an unchanged "
    "role with `trust repo publish --resign targets`; the online roles renew with `trust repo bump-online`"
)


class PublishSteps(WorkspaceBase):
    # ---- staged changes ---------------------------------------------------------------------
    def _changes(self) -> dict[str, Any]:
        path = self.staged_dir / "changes.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise RepoError(
                f"{path} is unreadable ({exc})",
                hint=f"`trust repo clean {self.hint_path()}` drops staged state",
            ) from exc
        if not isinstance(data, dict):
            data = {}
        data.setdefault("add", {})
        data.setdefault("remove", [])
        data.setdefault("expiry", {})
        return data

    def _save_changes(self, changes: dict[str, Any]) -> None:
        atomic_write(self.staged_dir / "changes.json", json.dumps(changes, indent=2).encode() + b"\n")

    def _staged_file(self, name: str) -> Path:
        return self.staged_dir / "targets" / parse.quote(name, safe="")

    def _role_path(self, role: str) -> Path:
        """staged/targets.json, or staged/roles/<role>.json for a delegated role."""
        if role == "targets":
            return self.staged_dir / "targets.json"
        return self.staged_dir / "roles" / f"{parse.quote(role, safe='')}.json"

    def _delegate_for(self, repo: Repository, name: str, role: str | None) -> str:
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
            if delegated.is_delegated_path(name) and self.keys_at_hand(candidate, repo):
                return str(candidate)
        return "targets"

    def add_target(
        self, file: Path, name: str | None, custom: dict[str, Any] | None, role: str | None = None
    ) -> Outcome:
        repo = self._load()
        name = name or file.name
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise UsageError(f"target name {name!r} is not a clean relative name")
        signing_role = self._delegate_for(repo, name, role)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from exc
        atomic_write(self._staged_file(name), data)
        changes = self._changes()
        changes["add"][name] = {"custom": custom, "role": signing_role}
        changes["remove"] = [n for n in changes["remove"] if n != name]
        self._save_changes(changes)
        self._drop_staged_role(signing_role)
        return Outcome(f"staged {name} ({len(data)} bytes) for {signing_role}; run `trust repo publish`")

    def _published_names(self, repo: Repository) -> dict[str, str]:
        """target name -> role that lists it."""
        names = {name: "targets" for name in repo.targets.signed.targets}
        for role, md in repo.delegated.items():
            names.update({name: role for name in md.signed.targets})
        return names

    def remove_target(self, name: str) -> Outcome:
        repo = self._load()
        changes = self._changes()
        published = self._published_names(repo)
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
        self._staged_file(name).unlink(missing_ok=True)
        if name in published and not any(
            r.get("name") == name for r in changes["remove"] if isinstance(r, dict)
        ):
            changes["remove"] = [r for r in changes["remove"] if r != name] + [name]
        self._save_changes(changes)
        self._drop_staged_role(published.get(name, role))
        return Outcome(f"staged removal of {name}; run `trust repo publish`")

    def _drop_staged_role(self, role: str) -> None:
        """A change invalidates signatures collected on a previous staged file of that role."""
        self._role_path(role).unlink(missing_ok=True)

    def _changed_roles(self, repo: Repository, changes: dict[str, Any]) -> set[str]:
        published = self._published_names(repo)
        roles = {str(change.get("role") or "targets") for change in changes["add"].values()}
        roles |= {published.get(name, "targets") for name in changes["remove"]}
        roles |= {role for role in changes["expiry"] if role not in ONLINE_ROLES and role != "root"}
        if changes.get("delegate"):
            roles.add("targets")
        roles |= {role for role in [*repo.delegated, "targets"] if self._role_path(role).exists()}
        return roles

    def _staged_role(
        self, repo: Repository, role: str, changes: dict[str, Any], now: datetime
    ) -> Metadata[Targets]:
        path = self._role_path(role)
        if path.exists():
            try:
                staged = Metadata[Targets].from_file(str(path))
            except BAD_METADATA as exc:
                raise RepoError(
                    f"{path} is not targets metadata ({exc})",
                    hint=f"drop it: `trust repo clean {self.hint_path()}`, then stage the change again",
                ) from exc
            published = repo.targets if role == "targets" else repo.delegated.get(role)
            published_version = published.signed.version if published else 0
            floor = max(published_version, repo.floors.get(role, 0))
            if staged.signed.version <= floor:
                raise RepoError(
                    f"staged {role} v{staged.signed.version} is stale: {role} v{floor} is published or was "
                    "signed since; its signatures cannot be used",
                    hint=f"drop it and stage the change again: `trust repo clean {self.hint_path()}`",
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
            info = TargetFile.from_data(name, self._staged_file(name).read_bytes(), ["sha256"])
            if change.get("custom") is not None:
                info.unrecognized_fields["custom"] = change["custom"]
            md.signed.targets[name] = info
        for name in changes["remove"]:
            md.signed.targets.pop(name, None)
        if role == "targets":
            _apply_delegations(md.signed, changes.get("delegate", {}))
        rule = self.rules(repo).get(role) or default_rule("targets")
        if role in changes["expiry"]:
            rule = ExpiryRule(**{k: timedelta(seconds=v) for k, v in changes["expiry"][role].items()})
        stamp_rule(md, rule)
        md.signed.version = repo.next_version(role, md.signed.version)
        md.signed.expires = (now + rule.lifetime).replace(microsecond=0)
        md.signatures.clear()
        return md

    # ---- publish ----------------------------------------------------------------------------
    def publish(self, now: datetime | None = None, *, resign: list[str] | None = None) -> Outcome:
        """Sign the changed targets roles with the keys at hand; publish only when every one
        meets its threshold (and a client accepts the result). A root change staged as a set
        by another machine (repository/ceremony.py) is completed here like `commit`."""
        now = now or utcnow()
        if (self.staged_dir / "root.json").exists() and self.ceremony_set():
            return self.commit(now)
        repo = self._load()
        published = self.published()
        changes = self._changes()
        roles = self._changed_roles(repo, changes)
        for role in resign or []:
            if role != "targets":
                self.role_keys(repo, role)  # refuses a role this repository does not have
            roles.add(role)
        if not roles:
            raise UsageError("nothing staged to publish", hint=NOTHING_STAGED_HINT)
        short: dict[str, tuple[int, int]] = {}
        signed: dict[str, Metadata[Targets]] = {}
        for role in sorted(roles):
            md = self._staged_role(repo, role, changes, now)
            for signer in self._signers(role, repo):
                if signer.public_key.keyid not in md.signatures:
                    md.sign(signer, append=True)
            have, threshold = self.signatures(repo, role, md)
            if have < threshold:
                self._role_path(role).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self._role_path(role), md.to_bytes(JSONSerializer(compact=False)))
                short[role] = (have, threshold)
            signed[role] = md
        if short:
            text = "; ".join(
                f"{role} v{signed[role].signed.version}: {h} of {n} signatures"
                for role, (h, n) in short.items()
            )
            missing = "; ".join(self.missing_keys(repo, role, signed[role]) for role in short)
            return Outcome(
                f"{text}; staged, not published. Still needed: {missing}. Add one with "
                "`trust repo sign ROLE --key FILE` (on the machine holding it, carrying staged/), then "
                "`trust repo publish` here",
                done=False,
                hint="carry staged/ to the key holder and back; nothing was published",
                details={"staged": {role: {"have": h, "need": n} for role, (h, n) in short.items()}},
            )
        online_short = [
            role for role in ONLINE_ROLES if len(self._signers(role, repo)) < self.role_keys(repo, role)[2]
        ]
        if online_short:
            for role, md in signed.items():
                self._role_path(role).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self._role_path(role), md.to_bytes(JSONSerializer(compact=False)))
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
            repo.target_data[name] = self._staged_file(name).read_bytes()
        self._sign_online(repo, now)
        pushed = self.release(repo, published)  # every listed target checked as it will be served
        shutil.rmtree(self.staged_dir / "targets", ignore_errors=True)
        shutil.rmtree(self.staged_dir / "roles", ignore_errors=True)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        (self.staged_dir / "changes.json").unlink(missing_ok=True)
        self._drop_staged_role("targets")
        versions = ", ".join(f"{role} v{md.signed.version}" for role, md in sorted(signed.items()))
        return self.finished(
            Outcome(
                f"published {versions}, snapshot v{repo.snapshot.signed.version}, "
                f"timestamp v{repo.timestamp.signed.version}",
                warnings=self.lifetime_warnings(repo, now),
                details={"versions": {role: md.signed.version for role, md in signed.items()}},
            ),
            pushed,
        )

    def commit(self, now: datetime | None = None) -> Outcome:
        raise NotImplementedError  # repository/ceremony.py

    def ceremony_set(self) -> dict[str, Any]:
        """staged/ceremony.json: the roles staged with a root change, as one set (ceremony.py)."""
        try:
            data = json.loads((self.staged_dir / SET_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def finished(self, outcome: Outcome, pushed: Outcome | None) -> Outcome:
        """A step's outcome with what its pull noted and what its push did."""
        if self.pulled is not None:
            outcome.warnings[:0] = self.pulled.outcome.warnings
        if pushed is not None:
            outcome.message += f"\n{pushed.message}"
            outcome.warnings += pushed.warnings
            outcome.details["pushed"] = pushed.details
        return outcome

    def missing_keys(self, repo: Repository, role: str, md: Metadata[Any], root: Root | None = None) -> str:
        """Which keys of `role` have not signed `md`, and where each one is held."""
        keys, keyids, _ = self.role_keys(repo, role, root)
        absent = [k for k in keyids if k not in md.signatures]
        return f"{role} key(s) " + ", ".join(f"{k[:12]}… ({self.where_held(k, keys[k])})" for k in absent)

    def where_held(self, keyid: str, key: Any) -> str:
        """A key's whereabouts as this machine knows them: a file here, or what its index
        remembers of one that left (made here, or added from a public key file)."""
        for kf in self.key_files():
            if kf.is_key(keyid, key):
                return f"{kf.path} on this machine"
        for name, entry in _index_entries(self.keys_dir).items():
            if entry.get("keyid") == keyid:
                if entry.get("from"):
                    return f"not on this machine; added from {entry['from']}"
                return f"not on this machine; made as keys/{name}.pem and moved since"
        return "not on this machine"

    def _sign_online(self, repo: Repository, now: datetime) -> None:
        """New snapshot and timestamp versions (the online keys must be at hand)."""
        rules = self.rules(repo)
        for role in ONLINE_ROLES:
            repo.signers[role] = self._require(role, repo)
        stamp_rule(repo.snapshot, rules["snapshot"])
        stamp_rule(repo.timestamp, rules["timestamp"])
        for name in repo.delegated:  # delegated roles are signed already; keep their signatures
            repo.signers.pop(name, None)
        repo.sign_snapshot_and_timestamp(now)

    # ---- the online roles -----------------------------------------------------------------
    def online_keys_listed(self, repo: Repository) -> None:
        """Refuse (exit 1) when this host holds snapshot or timestamp key files that the
        served root no longer lists: it can never sign again, and saying "nothing due" would
        look healthy (a host broken into, its key rotated out: TUF spec 5.3.11)."""
        root = repo.root.signed
        for role in ONLINE_ROLES:
            if self.keys_at_hand(role, repo):
                continue
            removed = self._removed_key(repo, role)
            if removed is None:
                continue
            name, keyid, version = removed
            raise RepoError(
                f"this host's {role} key {name} ({keyid[:12]}…) is no longer a {role} key: root v{version} "
                f"removed it (root v{root.version} is published), so this host cannot sign {role} any more",
                hint=f"install the new {role} key in {self.keys_dir} (on the machine that holds it: "
                f"`trust repo export-keys DRIVE --roles {role}`, then copy DRIVE/keys/*.pem here); or retire "
                "this host: `systemctl disable --now stella-trust-bump-online.timer`",
            )

    def _removed_key(self, repo: Repository, role: str) -> tuple[str, str, int] | None:
        """(file, keyid, root version that dropped it) for a key file here that an older root
        listed for `role` and the current one does not."""
        from tuf.api.metadata import Root as RootType

        history = [Metadata[RootType].from_bytes(data).signed for data in repo.root_history]
        for kf in self.key_files():
            for index in range(len(history) - 2, -1, -1):
                older = history[index]
                keyid = kf.matching(dict(older.keys), older.roles[role].keyids)
                if keyid is not None:
                    return kf.path.name, keyid, older.version + 1
        return None

    def resign_reasons(self, repo: Repository) -> dict[str, str]:
        """Why snapshot or timestamp must be signed again although not due: a version above
        them was seen (a served rollback: clients may hold it), they do not name the roles
        this workspace serves, or the current root no longer accepts their signatures."""
        reasons: dict[str, str] = {}
        snapshot, timestamp = repo.snapshot.signed, repo.timestamp.signed
        for fork in self.pulled.online_forks if self.pulled else []:
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
        if self.signatures(repo, "snapshot", repo.snapshot)[0] < repo.root.signed.roles["snapshot"].threshold:
            reasons.setdefault("snapshot", f"root v{repo.root.signed.version} does not accept its signatures")
        if timestamp.version < repo.floors.get("timestamp", 0):
            reasons["timestamp"] = (
                f"timestamp v{repo.floors['timestamp']} was published or signed before; the served "
                f"v{timestamp.version} is a rollback"
            )
        if timestamp.snapshot_meta.version != snapshot.version:
            reasons.setdefault("timestamp", f"it does not name snapshot v{snapshot.version}")
        threshold = repo.root.signed.roles["timestamp"].threshold
        if self.signatures(repo, "timestamp", repo.timestamp)[0] < threshold:
            reasons.setdefault(
                "timestamp", f"root v{repo.root.signed.version} does not accept its signatures"
            )
        return reasons

    def bump_online(
        self, now: datetime | None = None, *, force: bool = False, repo: Repository | None = None
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
            self.rebase = True
            repo = self._load()
        published = self.published()
        self.online_keys_listed(repo)
        rules = self.rules(repo)
        reasons = self.resign_reasons(repo)
        due = [
            role
            for role, md in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
            if force or role in reasons or rules[role].due(md.signed.expires, now)
        ]
        if not due:
            return self.finished(
                self._forks_alarm(
                    Outcome(
                        "nothing due: "
                        + "; ".join(
                            f"{role} v{md.signed.version} {expiry_phrase(md.signed.expires, now)} (renewed "
                            f"when {human_duration(rules[role].resign_within)} are left)"
                            for role, md in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
                        ),
                        details={"resigned": []},
                    )
                ),
                None,
            )
        if "snapshot" in due:
            self._sign_online(repo, now)
        else:
            repo.signers["timestamp"] = self._require("timestamp", repo)
            stamp_rule(repo.timestamp, rules["timestamp"])
            repo.timestamp.signed.version = repo.next_version("timestamp", repo.timestamp.signed.version)
            repo.timestamp.signed.expires = (now + rules["timestamp"].lifetime).replace(microsecond=0)
            repo.sign_role(repo.timestamp)
        pushed = self.release(repo, published)
        resigned = ["snapshot", "timestamp"] if "snapshot" in due else ["timestamp"]
        why = [f"{role}: {reasons[role]}" for role in resigned if role in reasons]
        outcome = Outcome(
            f"re-signed {' and '.join(resigned)}: "
            f"snapshot v{repo.snapshot.signed.version} {expiry_phrase(repo.snapshot.signed.expires, now)}, "
            f"timestamp v{repo.timestamp.signed.version} {expiry_phrase(repo.timestamp.signed.expires, now)}"
            + (f" (not due, but {'; '.join(why)})" if why else ""),
            warnings=self.lifetime_warnings(repo, now),
            details={"resigned": resigned},
        )
        return self.finished(self._forks_alarm(outcome), pushed)

    def _forks_alarm(self, outcome: Outcome) -> Outcome:
        """A fork the timer settled by taking the served state still splits the fleet (clients
        that hold the other copy keep it: python-tuf re-uses an unchanged version), and only a
        new version signed by that role's keys heals it: say so, and exit 1. (Two roots with
        one version: only the root key holders can tell which chain clients must follow.)"""
        forks = self.pulled.merge.forks if self.pulled else []
        if not forks:
            return outcome
        roles = sorted({c.role for c in forks})
        outcome.message += "\nbut " + "; ".join(c.describe() for c in forks)
        outcome.done = False
        if "root" in roles:
            outcome.hint = (
                "two root chains were published: the root key holders must compare them "
                f"(this host took the served one; its own is in {self.pulled.aside if self.pulled else '?'})"
            )
        else:
            outcome.hint = (
                f"clients may hold either copy: publish a new version of {', '.join(roles)} where its key is "
                "(`trust repo publish --resign ROLE --to DIR`); this host took the published one"
            )
        return outcome

    def timestamp(self, lifetime: timedelta | None = None, now: datetime | None = None) -> Outcome:
        """Re-sign only the timestamp (only the timestamp key), refused when the snapshot must
        change too: an expired snapshot, or one the published state no longer matches."""
        now = now or utcnow()
        self.rebase = True
        repo = self._load()
        published = self.published()
        self.online_keys_listed(repo)
        snapshot = repo.snapshot.signed
        reasons = self.resign_reasons(repo)
        if snapshot.is_expired(now) or "snapshot" in reasons:
            cause = (
                expiry_phrase(snapshot.expires, now)
                if snapshot.is_expired(now)
                else f"must change: {reasons['snapshot']}"
            )
            raise RepoError(
                f"refused: snapshot v{snapshot.version} {cause}; a new timestamp over it would still fail "
                "every client",
                hint="run `trust repo bump-online` where the snapshot and timestamp keys are "
                "(the timer does)",
            )
        repo.signers["timestamp"] = self._require("timestamp", repo)
        expires = (now + (lifetime or repo.expiries.timestamp)).replace(microsecond=0)
        repo.timestamp.signed.version = repo.next_version("timestamp", repo.timestamp.signed.version)
        repo.timestamp.signed.expires = expires
        repo.sign_role(repo.timestamp)
        pushed = self.release(repo, published)
        warnings = self.lifetime_warnings(repo, now)
        if snapshot.expires < expires:
            warnings.append(
                f"snapshot v{snapshot.version} {expiry_phrase(snapshot.expires, now)}, "
                "before this timestamp: "
                "use `trust repo bump-online` to renew both"
            )
        return self.finished(
            Outcome(f"timestamp v{repo.timestamp.signed.version} expires {iso(expires)}", warnings=warnings),
            pushed,
        )


def _index_entries(keys_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((keys_dir / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _apply_delegations(targets: Targets, delegations: dict[str, Any]) -> None:
    """Staged `trust repo delegate` entries -> delegations in the new targets version
    (TUF spec 5.6.7: a terminating delegation, so paths are not searched past it)."""
    from tuf.api.metadata import DelegatedRole, Delegations, Key

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


__all__ = ["PublishSteps", "signed_by"]
