"""Publishing: stage target changes, sign targets (and delegated roles) at threshold, and
keep the online roles fresh without the offline keys (`bump-online`)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import parse

from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import expiry_phrase, human_duration, iso, utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.metadata import Repository, signed_by
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.policy import ONLINE_ROLES, RolePolicy, default_policy, stamp_policy
from stella_trust.repository.workspace import BAD_METADATA, WorkspaceBase

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
                f"{path} is unreadable ({exc})", hint="`trust repo clean` drops staged state"
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
                    f"{path} is not targets metadata ({exc})", hint="`trust repo clean` drops it"
                ) from exc
            published = repo.targets if role == "targets" else repo.delegated.get(role)
            published_version = published.signed.version if published else 0
            if staged.signed.version != published_version + 1:
                raise RepoError(
                    f"staged {role} v{staged.signed.version} is stale: v{published_version} is "
                    "published; its signatures cannot be used",
                    hint="`trust repo clean` and stage the change again",
                )
            return staged
        if role == "targets" or role in repo.delegated:
            current = repo.targets if role == "targets" else repo.delegated[role]
            md = Metadata[Targets].from_bytes(current.to_bytes())
        else:  # the first publication of a delegated role: v1 (bumped from a v0 placeholder below)
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
        policy = self.policies(repo).get(role) or default_policy("targets")
        if role in changes["expiry"]:
            policy = RolePolicy(**{k: timedelta(seconds=v) for k, v in changes["expiry"][role].items()})
        stamp_policy(md, policy)
        md.signed.version += 1
        md.signed.expires = (now + policy.lifetime).replace(microsecond=0)
        md.signatures.clear()
        return md

    # ---- publish ----------------------------------------------------------------------------
    def publish(self, now: datetime | None = None, *, resign: list[str] | None = None) -> Outcome:
        """Sign the changed targets roles with the keys at hand; publish only when every one
        meets its threshold (and a client accepts the result)."""
        now = now or utcnow()
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
            return Outcome(
                f"{text}; staged, not published. Add one with `trust repo sign ROLE --key FILE` "
                "(on the machine holding it, carrying staged/), then `trust repo publish`",
                done=False,
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
        self.release(repo, published)  # every listed target checked as it will be served
        shutil.rmtree(self.staged_dir / "targets", ignore_errors=True)
        shutil.rmtree(self.staged_dir / "roles", ignore_errors=True)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        (self.staged_dir / "changes.json").unlink(missing_ok=True)
        self._drop_staged_role("targets")
        versions = ", ".join(f"{role} v{md.signed.version}" for role, md in sorted(signed.items()))
        return Outcome(
            f"published {versions}, snapshot v{repo.snapshot.signed.version}, "
            f"timestamp v{repo.timestamp.signed.version}",
            warnings=self.lifetime_warnings(repo, now),
            details={"versions": {role: md.signed.version for role, md in signed.items()}},
        )

    def _sign_online(self, repo: Repository, now: datetime) -> None:
        """New snapshot and timestamp versions (the online keys must be at hand)."""
        policies = self.policies(repo)
        for role in ONLINE_ROLES:
            repo.signers[role] = self._require(role, repo)
        stamp_policy(repo.snapshot, policies["snapshot"])
        stamp_policy(repo.timestamp, policies["timestamp"])
        for name in repo.delegated:  # delegated roles are signed already; keep their signatures
            repo.signers.pop(name, None)
        repo.sign_snapshot_and_timestamp(now)

    # ---- the online roles -----------------------------------------------------------------
    def bump_online(
        self, now: datetime | None = None, *, force: bool = False, repo: Repository | None = None
    ) -> Outcome:
        """Re-sign snapshot and timestamp when either is inside its refresh window; needs
        only the online keys (TUF spec 5.5/5.4: the timestamp names the snapshot, so a new
        snapshot always comes with a new timestamp)."""
        now = now or utcnow()
        repo = repo or self._load()
        published = self.published()
        policies = self.policies(repo)
        due = [
            role
            for role, md in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
            if force or policies[role].due(md.signed.expires, now)
        ]
        if not due:
            return Outcome(
                "nothing due: "
                + "; ".join(
                    f"{role} v{md.signed.version} {expiry_phrase(md.signed.expires, now)} (renewed when "
                    f"{human_duration(policies[role].resign_within)} are left)"
                    for role, md in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
                ),
                details={"resigned": []},
            )
        if "snapshot" in due:
            self._sign_online(repo, now)
        else:
            repo.signers["timestamp"] = self._require("timestamp", repo)
            stamp_policy(repo.timestamp, policies["timestamp"])
            repo.timestamp.signed.version += 1
            repo.timestamp.signed.expires = (now + policies["timestamp"].lifetime).replace(microsecond=0)
            repo.sign_role(repo.timestamp)
        self.release(repo, published)
        return Outcome(
            f"re-signed {' and '.join(['snapshot', 'timestamp'] if 'snapshot' in due else ['timestamp'])}: "
            f"snapshot v{repo.snapshot.signed.version} {expiry_phrase(repo.snapshot.signed.expires, now)}, "
            f"timestamp v{repo.timestamp.signed.version} {expiry_phrase(repo.timestamp.signed.expires, now)}",
            warnings=self.lifetime_warnings(repo, now),
            details={"resigned": ["snapshot", "timestamp"] if "snapshot" in due else ["timestamp"]},
        )

    def timestamp(self, lifetime: timedelta | None = None, now: datetime | None = None) -> Outcome:
        """Re-sign only the timestamp (only the timestamp key), refused over an expired
        snapshot: a fresh timestamp naming an expired snapshot still fails every client."""
        now = now or utcnow()
        repo = self._load()
        published = self.published()
        snapshot = repo.snapshot.signed
        if snapshot.is_expired(now):
            raise RepoError(
                f"refused: snapshot v{snapshot.version} {expiry_phrase(snapshot.expires, now)}; a new "
                "timestamp over it would still fail every client",
                hint="run `trust repo bump-online` where the snapshot and timestamp keys are "
                "(the timer does)",
            )
        repo.signers["timestamp"] = self._require("timestamp", repo)
        expires = (now + (lifetime or repo.expiries.timestamp)).replace(microsecond=0)
        repo.timestamp.signed.version += 1
        repo.timestamp.signed.expires = expires
        repo.sign_role(repo.timestamp)
        self.release(repo, published)
        warnings = self.lifetime_warnings(repo, now)
        if snapshot.expires < expires:
            warnings.append(
                f"snapshot v{snapshot.version} {expiry_phrase(snapshot.expires, now)}, "
                "before this timestamp: "
                "use `trust repo bump-online` to renew both"
            )
        return Outcome(
            f"timestamp v{repo.timestamp.signed.version} expires {iso(expires)}", warnings=warnings
        )


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
