"""Reports for operators: status, root digests to pin, expiry checks, key export."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Targets

from stella_trust._internal.fs import write_into
from stella_trust._internal.timefmt import compact_duration, expiry_phrase, human_duration, iso, utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.expiry import ONLINE_ROLES
from stella_trust.repository.keys import (
    KEY_NAME,
    new_passphrase,
    passphrase,
    passphrase_name,
    passphrase_variable,
    reencrypt,
)
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.rotation import RotationSteps
from stella_trust.repository.workspace import ROLES


class Workspace(RotationSteps):
    """The operator's workspace behind `trust repo` (layout: see repository/workspace.py)."""

    def status(self, now: datetime | None = None) -> Outcome:
        now = now or utcnow()
        repo = self._load()
        lines = [f"repository {self.repo_dir}"]
        details: dict[str, Any] = {"roles": {}, "staged": {}}
        for role, md in (
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            signed = md.signed
            at_hand = self.keys_at_hand(role, repo)
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
            staged = self.staged_root(repo)
        except RepoError as exc:
            staged = None
            lines.append(f"staged root: {exc.message}")
            details["staged"]["root"] = {"error": exc.message}
        if staged is not None:
            text = self.root_status(repo, staged)
            lines.append(f"staged root v{staged.signed.version}: {text}")
            old_have, old_need = self.signatures(repo, "root", staged)
            new_have, new_need = self.signatures(repo, "root", staged, root=staged.signed)
            details["staged"]["root"] = {
                "version": staged.signed.version,
                "old_threshold": {"have": old_have, "need": old_need},
                "new_threshold": {"have": new_have, "need": new_need},
            }
        for role in ["targets", *sorted(repo.delegated)]:
            path = self._role_path(role)
            if path.exists():
                staged_role = Metadata[Targets].from_file(str(path))
                have, need = self.signatures(repo, role, staged_role)
                lines.append(f"staged {role} v{staged_role.signed.version}: {have}/{need} signatures")
                details["staged"][role] = {"version": staged_role.signed.version, "have": have, "need": need}
        changes = self._changes()
        if changes["add"] or changes["remove"] or changes["expiry"] or changes.get("delegate"):
            lines.append(
                f"staged changes: add {', '.join(changes['add']) or '-'}; "
                f"remove {', '.join(changes['remove']) or '-'}"
                + (f"; new lifetimes for {', '.join(changes['expiry'])}" if changes["expiry"] else "")
                + (f"; delegations {', '.join(changes['delegate'])}" if changes.get("delegate") else "")
            )
            details["staged"]["changes"] = changes
        return Outcome("\n".join(lines), details=details, warnings=self.lifetime_warnings(repo, now))

    # ---- reports ------------------------------------------------------------------------------
    def roots(self) -> Outcome:
        """The pin for clients: the oldest root from which the whole chain verifies (an older
        root that does not chain is history a mirror could have made up, never a pin)."""
        from stella_trust.repository.published import verified_chain_start

        repo = self._load()
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
        self, within: timedelta | None = None, now: datetime | None = None, valid_at: datetime | None = None
    ) -> Outcome:
        """Each role judged by its own rhythm: offline roles (root, targets, delegated) alarm
        inside `within` (default: their own re-sign window); online roles alarm when a
        re-sign was missed (half their window gone: is the timer running?); an expired role
        is called expired. `valid_at` asks the question for another moment (go-tuf
        `status --valid-at`)."""
        moment = valid_at or now or utcnow()
        repo = self._load()
        rules = self.rules(repo)
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
        head = (
            f"{len(problems)} role(s) need attention" if problems else "all roles within their rhythm"
        ) + (f" (at {iso(moment)})" if valid_at else "")
        return Outcome(
            "\n".join([head, *lines]),
            done=not problems,
            hint=hint,
            details={"roles": findings, "problems": len(problems)},
        )

    def keys(self) -> Outcome:
        """Which key serves which role, and which file here holds it (go-tuf `root-keys`)."""
        repo = self._load()
        staged = self.staged_root(repo)
        sources: list[tuple[str, Any, str]] = [
            (f"root v{repo.root.signed.version}", repo.root.signed, "root")
        ]
        if staged is not None:
            sources.append((f"staged root v{staged.signed.version}", staged.signed, "root"))
        entries: dict[str, dict[str, Any]] = {}
        for label, root, _ in sources:
            for role in ROLES:
                for keyid in root.roles[role].keyids:
                    entry = entries.setdefault(
                        keyid,
                        {
                            "keyid": keyid,
                            "scheme": root.keys[keyid].scheme,
                            "roles": [],
                            "file": None,
                            "_key": root.keys[keyid],
                        },
                    )
                    entry["roles"].append(f"{role} ({label})")
        delegations = repo.targets.signed.delegations
        if delegations is not None:
            for name, delegated in (delegations.roles or {}).items():
                for keyid in delegated.keyids:
                    entry = entries.setdefault(
                        keyid,
                        {
                            "keyid": keyid,
                            "scheme": delegations.keys[keyid].scheme,
                            "roles": [],
                            "file": None,
                            "_key": delegations.keys[keyid],
                        },
                    )
                    entry["roles"].append(f"{name} (delegated by targets)")
        unused = []
        for kf in self.key_files():
            for keyid, entry in entries.items():
                if entry["file"] is None and kf.is_key(keyid, entry["_key"]):
                    entry["file"] = (
                        str(kf.path.relative_to(self.path))
                        if kf.path.is_relative_to(self.path)
                        else str(kf.path)
                    )
                    break
            else:
                unused.append(kf.path.name)
        rows = [{k: v for k, v in e.items() if k != "_key"} for e in entries.values()]
        lines = [f"{r['keyid'][:16]}  {r['file'] or '-':<24} {', '.join(r['roles'])}" for r in rows]
        if unused:
            lines.append(f"key files no role lists: {', '.join(unused)}")
        return Outcome("\n".join(lines), details={"keys": rows, "unused_files": unused})

    def export_keys(self, roles: list[str], out: Path) -> Outcome:
        if "root" in roles:
            raise UsageError("root keys are never exported: they stay on the offline root machines")
        repo = self._load()
        chosen = sorted({name for role in roles for name in self.keys_at_hand(role, repo)})
        if not chosen:
            raise UsageError(f"no keys at hand for {', '.join(roles)}")
        out.mkdir(parents=True, exist_ok=True)
        for name in chosen:  # the drive's preparer may have planted links: the one rule (fs.py)
            write_into(out / "keys", f"{name}.pem", (self.keys_dir / f"{name}.pem").read_bytes(), 0o600)
        return Outcome(f"exported {', '.join(chosen)} to {out / 'keys'}")

    def change_passphrase(self, key: Path) -> Outcome:
        """Same key, new passphrase: the old from STELLA_<NAME>_PASSPHRASE (or a prompt), the
        new from STELLA_<NAME>_NEW_PASSPHRASE (or a prompt, twice)."""
        path = self.resolve(key)
        if not path.is_file() and not key.is_absolute() and len(key.parts) == 1:
            path = self.keys_dir / (key.name if key.suffix == ".pem" else f"{key.name}.pem")
        if not path.is_file():
            raise UsageError(
                f"no key file {path}",
                hint="KEY is a path (relative to --path) or a name in keys/: see "
                f"`trust repo keys {self.hint_path()}`",
            )
        reencrypt(path, passphrase(passphrase_name(path)), new_passphrase(passphrase_name(path)))
        return Outcome(
            f"changed the passphrase of {path}; "
            f"set {passphrase_variable(passphrase_name(path))} to the new one"
        )

    def keygen(self, name: str, key_type: str = "ed25519") -> Outcome:
        """A releaser's own key: keys/NAME.pem (encrypted) and NAME.pub to hand to the
        repository's targets holder for `trust repo delegate` (the private key never moves)."""
        from stella_trust.repository.keyring import public_block
        from stella_trust.repository.keys import KEY_NAME, save_key
        from stella_trust.repository.metadata import generate_signer

        if not KEY_NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not a key name (letters, digits, '-', '_')")
        private = self.keys_dir / f"{name}.pem"
        if private.exists():
            raise UsageError(f"{private} exists already")
        signer = generate_signer(key_type)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        save_key(private, signer, passphrase(name, confirm=True))
        public = self.path / f"{name}.pub"
        block = public_block(private.read_bytes())
        assert block is not None
        public.write_bytes(block)
        return Outcome(
            f"created {private} (keyid {signer.public_key.keyid[:16]}…) and {public}: hand {public.name} to "
            "the targets key holder (`trust repo delegate NAME --paths ... --key FILE`)",
            details={"keyid": signer.public_key.keyid, "public_key": str(public)},
        )

    def delegate(self, name: str, paths: list[str], public_keys: list[Path], threshold: int) -> Outcome:
        """Stage a delegation from targets: NAME signs only PATHS, with its own keys
        (a releaser's, made on their machine); published with the next targets."""
        repo = self._load()
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
            for key in (self._new_key("targets", None, None, path)[0] for path in public_keys)
        ]
        changes = self._changes()
        changes.setdefault("delegate", {})[name] = {"paths": paths, "keys": keys, "threshold": threshold}
        self._save_changes(changes)
        self._drop_staged_role("targets")
        del repo
        return Outcome(
            f"staged delegation {name}: paths {', '.join(paths)}, threshold {threshold} of "
            f"{len(keys)} key(s); run `trust repo publish` where the targets key is"
        )
