"""Publishing: stage target changes, sign targets at threshold, re-sign the timestamp."""

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
from stella_trust._internal.timefmt import iso, utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.metadata import Repository, signed_by
from stella_trust.repository.outcome import Outcome
from stella_trust.repository.workspace import WorkspaceBase


class PublishSteps(WorkspaceBase):
    # ---- targets --------------------------------------------------------------------------
    def _changes(self) -> dict[str, Any]:
        path = self.staged_dir / "changes.json"
        if not path.exists():
            return {"add": {}, "remove": []}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def _save_changes(self, changes: dict[str, Any]) -> None:
        atomic_write(self.staged_dir / "changes.json", json.dumps(changes, indent=2).encode() + b"\n")

    def add_target(self, file: Path, name: str | None, custom: dict[str, Any] | None) -> Outcome:
        self.config()
        name = name or file.name
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise UsageError(f"target name {name!r} is not a clean relative name")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from exc
        atomic_write(self.staged_dir / "targets" / parse.quote(name, safe=""), data)
        changes = self._changes()
        changes["add"][name] = {"custom": custom}
        changes["remove"] = [n for n in changes["remove"] if n != name]
        self._save_changes(changes)
        self._drop_staged_targets()
        return Outcome(f"staged {name} ({len(data)} bytes); run `trust repo publish`")

    def remove_target(self, name: str) -> Outcome:
        repo = self._load()
        changes = self._changes()
        if name not in repo.targets.signed.targets and name not in changes["add"]:
            raise UsageError(f"Unknown target {name!r}: neither published nor staged")
        changes["add"].pop(name, None)
        (self.staged_dir / "targets" / parse.quote(name, safe="")).unlink(missing_ok=True)
        if name in repo.targets.signed.targets and name not in changes["remove"]:
            changes["remove"].append(name)
        self._save_changes(changes)
        self._drop_staged_targets()
        return Outcome(f"staged removal of {name}; run `trust repo publish`")

    def _drop_staged_targets(self) -> None:
        """A change invalidates signatures collected on a previous staged targets file."""
        (self.staged_dir / "targets.json").unlink(missing_ok=True)

    def _staged_targets(self, repo: Repository, now: datetime) -> Metadata[Targets]:
        path = self.staged_dir / "targets.json"
        if path.exists():
            return Metadata[Targets].from_file(str(path))
        changes = self._changes()
        md = Metadata[Targets].from_bytes(repo.targets.to_bytes())
        for name, change in changes["add"].items():
            data = (self.staged_dir / "targets" / parse.quote(name, safe="")).read_bytes()
            info = TargetFile.from_data(name, data, ["sha256"])
            if change.get("custom") is not None:
                info.unrecognized_fields["custom"] = change["custom"]
            md.signed.targets[name] = info
        for name in changes["remove"]:
            md.signed.targets.pop(name, None)
        md.signed.version += 1
        md.signed.expires = (now + repo.expiries.targets).replace(microsecond=0)
        md.signatures.clear()
        return md

    def publish(self, now: datetime | None = None) -> Outcome:
        """Sign targets, snapshot, timestamp with the keys at hand; publish only at threshold."""
        now = now or utcnow()
        repo = self._load()
        root = repo.root.signed
        targets = self._staged_targets(repo, now)
        for signer in self._signers("targets", root.roles["targets"].keyids):
            targets.sign(signer, append=True)
        have, need = signed_by(root, "targets", targets)
        if have < need:
            atomic_write(self.staged_dir / "targets.json", targets.to_bytes(JSONSerializer(compact=False)))
            return Outcome(
                f"targets v{targets.signed.version}: {have} of {need} signatures; staged, not "
                "published. Add one with `trust repo sign targets --key keys/NAME.pem` (on the "
                "machine holding it, carrying staged/targets.json), then `trust repo publish`",
                done=False,
                details={"targets": {"have": have, "need": need}},
            )
        repo.targets = targets
        for name in self._changes()["add"]:
            repo.target_data[name] = (self.staged_dir / "targets" / parse.quote(name, safe="")).read_bytes()
        for role in ("snapshot", "timestamp"):
            repo.signers[role] = self._require(role, root)
        repo.sign_snapshot_and_timestamp(now)
        repo.write()
        shutil.rmtree(self.staged_dir / "targets", ignore_errors=True)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        (self.staged_dir / "changes.json").unlink(missing_ok=True)
        self._drop_staged_targets()
        return Outcome(
            f"published targets v{targets.signed.version}, snapshot v{repo.snapshot.signed.version}, "
            f"timestamp v{repo.timestamp.signed.version}",
            warnings=self.lifetime_warnings(repo, now),
        )

    def timestamp(self, lifetime: timedelta | None = None, now: datetime | None = None) -> Outcome:
        """Re-sign only the timestamp: needs only the timestamp key (cron friendly)."""
        now = now or utcnow()
        repo = self._load()
        repo.signers["timestamp"] = self._require("timestamp", repo.root.signed)
        expires = (now + (lifetime or repo.expiries.timestamp)).replace(microsecond=0)
        repo.resign_timestamp(now, expires)
        return Outcome(
            f"timestamp v{repo.timestamp.signed.version} expires {iso(expires)}",
            warnings=self.lifetime_warnings(repo, now),
        )
