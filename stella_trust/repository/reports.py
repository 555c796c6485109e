"""Reports for operators: status, root digests to pin, expiry checks, key export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import iso, utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.metadata import signed_by
from stella_trust.repository.outcome import Outcome
from stella_trust.repository.rotation import RotationSteps


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
            at_hand = self.keys_at_hand(role)
            threshold = repo.root.signed.roles[role].threshold
            lines.append(
                f"  {role:<9} v{signed.version}  expires {iso(signed.expires)}  threshold "
                f"{threshold}  keys here: {', '.join(at_hand) or '-'}"
            )
            details["roles"][role] = {
                "version": signed.version,
                "expires": iso(signed.expires),
                "threshold": threshold,
                "keys_at_hand": at_hand,
            }
        root_path = self.staged_dir / "root.json"
        if root_path.exists():
            staged = Metadata[Root].from_file(str(root_path))
            text = self.root_status(repo, staged)
            lines.append(f"staged root v{staged.signed.version}: {text}")
            details["staged"]["root"] = text
        targets_path = self.staged_dir / "targets.json"
        if targets_path.exists():
            staged_targets = Metadata[Targets].from_file(str(targets_path))
            have, need = signed_by(repo.root.signed, "targets", staged_targets)
            lines.append(f"staged targets v{staged_targets.signed.version}: {have}/{need} signatures")
            details["staged"]["targets"] = {"have": have, "need": need}
        changes = self._changes()
        if changes["add"] or changes["remove"]:
            lines.append(
                f"staged changes: add {', '.join(changes['add']) or '-'}; "
                f"remove {', '.join(changes['remove']) or '-'}"
            )
            details["staged"]["changes"] = changes
        return Outcome("\n".join(lines), details=details, warnings=self.lifetime_warnings(repo, now))

    # ---- reports ------------------------------------------------------------------------------
    def roots(self) -> Outcome:
        repo = self._load()
        first, current = repo.root_history[0], repo.root_history[-1]
        first_sha = hashlib.sha256(first).hexdigest()
        current_sha = hashlib.sha256(current).hexdigest()
        text = (
            f"1.root.json sha256 {first_sha}  (pin: trust init --root-sha256 {first_sha})\n"
            f"{len(repo.root_history)}.root.json sha256 {current_sha}  (current root)"
        )
        return Outcome(
            text,
            details={
                "first": {"version": 1, "sha256": first_sha},
                "current": {"version": len(repo.root_history), "sha256": current_sha},
            },
        )

    def check(self, within: timedelta, now: datetime | None = None) -> Outcome:
        now = now or utcnow()
        repo = self._load()
        expiring = []
        for role, md in (
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            if md.signed.expires <= now + within:
                expiring.append(f"{role} v{md.signed.version} expires {iso(md.signed.expires)}")
        if expiring:
            return Outcome(
                "expiring within " + str(within) + ": " + "; ".join(expiring),
                done=False,
                details={"expiring": expiring},
            )
        return Outcome(f"no role expires within {within}", details={"expiring": []})

    def export_keys(self, roles: list[str], out: Path) -> Outcome:
        if "root" in roles:
            raise UsageError("root keys are never exported: they stay on the offline root machines")
        index = self.index()
        chosen = {
            name: entry
            for name, entry in index.items()
            if entry["role"] in roles and (self.keys_dir / f"{name}.pem").is_file()
        }
        if not chosen:
            raise UsageError(f"no keys at hand for {', '.join(roles)}")
        (out / "keys").mkdir(parents=True, exist_ok=True)
        os.chmod(out / "keys", 0o700)
        for name in chosen:
            shutil.copy2(self.keys_dir / f"{name}.pem", out / "keys" / f"{name}.pem")
            os.chmod(out / "keys" / f"{name}.pem", 0o600)
        atomic_write(out / "keys" / "index.json", json.dumps(chosen, indent=2).encode() + b"\n")
        return Outcome(f"exported {', '.join(sorted(chosen))} to {out / 'keys'}")
