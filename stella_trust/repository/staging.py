"""The workspace's `staged/` directory: work that is not published yet and may travel
between machines (a staged root collecting signatures, targets below threshold, target
files and changes to publish, a root change staged with the roles it needs). `trust repo
clean` (commands/edits.py) drops it.

Every staged file is read as possibly stale (signed elsewhere since, or against an older
root) and refused with the command that drops it, never trusted for its version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib import parse

from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import RepoError
from stella_trust.repository.state import BAD_METADATA

SET_FILE = "ceremony.json"  # staged/ceremony.json: the roles staged with a root change, as one set
CREATED_FILE = "created-keys.json"  # staged/: key files `root add-key` made for the staged root
NEXT = ".next"  # keys/<name>.next.pem: a rotation's new key until its root is committed


def read_json(path: Path) -> dict[str, Any]:
    """A small staged JSON document, {} when absent or damaged (it is rebuilt, not trusted)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Staging:
    """The files under `staged/`, by what they hold."""

    def __init__(self, staged_dir: Path, hint_path: str) -> None:
        self.dir = staged_dir
        self.hint_path = hint_path  # `--path WS`, for hints a person pastes as they are

    # ---- target changes -------------------------------------------------------------------
    def changes(self) -> dict[str, Any]:
        """staged/changes.json: targets to add and remove, new lifetimes, delegations."""
        path = self.dir / "changes.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise RepoError(
                f"{path} is unreadable ({exc})",
                hint=f"`trust repo clean {self.hint_path}` drops staged state",
            ) from exc
        if not isinstance(data, dict):
            data = {}
        data.setdefault("add", {})
        data.setdefault("remove", [])
        data.setdefault("expiry", {})
        return data

    def save_changes(self, changes: dict[str, Any]) -> None:
        """Replace staged/changes.json (atomically: a crash leaves the old or the new)."""
        atomic_write(self.dir / "changes.json", json.dumps(changes, indent=2).encode() + b"\n")

    def target_file(self, name: str) -> Path:
        """Where a staged target's bytes wait for the publication (one flat, quoted name)."""
        return self.dir / "targets" / parse.quote(name, safe="")

    def role_path(self, role: str) -> Path:
        """staged/targets.json, or staged/roles/<role>.json for a delegated role."""
        if role == "targets":
            return self.dir / "targets.json"
        return self.dir / "roles" / f"{parse.quote(role, safe='')}.json"

    def role(self, role: str, then: str = "") -> Metadata[Targets] | None:
        """The staged targets or delegated role (None when none is staged), for `publish` and a
        root change's `commit` alike; a file that is not targets metadata is refused with the
        command that drops it (`then`: what to do after, added to the hint). Its version is the
        caller's to judge against what is published."""
        path = self.role_path(role)
        if not path.exists():
            return None
        try:
            return Metadata[Targets].from_file(str(path))
        except BAD_METADATA as exc:
            raise RepoError(
                f"{path} is not targets metadata ({exc})",
                hint=f"drop it: `trust repo clean {self.hint_path}`{then}",
            ) from exc

    def drop_role(self, role: str) -> None:
        """A change invalidates signatures collected on a previous staged file of that role."""
        self.role_path(role).unlink(missing_ok=True)

    def save_role(self, role: str, md: Metadata[Any]) -> None:
        """A role signed below its threshold, kept for the other key holders."""
        self.role_path(role).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.role_path(role), md.to_bytes(JSONSerializer(compact=False)))

    def clear_changes(self) -> None:
        """After a publication: the changes it published and their files are gone."""
        shutil.rmtree(self.dir / "targets", ignore_errors=True)
        shutil.rmtree(self.dir / "roles", ignore_errors=True)
        (self.dir / "targets").mkdir(parents=True, exist_ok=True)
        (self.dir / "changes.json").unlink(missing_ok=True)
        self.drop_role("targets")

    # ---- the root under ceremony ------------------------------------------------------------
    def root(self, repo: Repository) -> Metadata[Root] | None:
        """The root under ceremony, refused when it is stale (committed elsewhere, or made
        against an older root): its signatures would be collected for nothing."""
        path = self.dir / "root.json"
        if not path.exists():
            return None
        try:
            md = Metadata[Root].from_file(str(path))
        except BAD_METADATA as exc:
            raise RepoError(
                f"{path} is not root metadata ({exc})", hint=f"`trust repo clean {self.hint_path}` drops it"
            ) from exc
        if md.signed.version != repo.root.signed.version + 1:
            raise RepoError(
                f"staged root v{md.signed.version} is stale: root v{repo.root.signed.version} is published "
                "(committed on another machine?)",
                hint=f"drop it with `trust repo clean {self.hint_path}` (a change committed elsewhere is "
                "published already)",
            )
        return md

    def save_root(self, md: Metadata[Root]) -> None:
        """Write the root under ceremony (indented: people carry and compare it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / "root.json", md.to_bytes(JSONSerializer(compact=False)))

    def ceremony_set(self) -> dict[str, Any]:
        """staged/ceremony.json: the roles staged with a root change, as one set (commit.py)."""
        return read_json(self.dir / SET_FILE)

    def note_created(self, name: str) -> None:
        """Remember the key files made for the staged root: `clean` retires them with it."""
        path = self.dir / CREATED_FILE
        created = read_json(path).get("keys", [])
        if name not in created:
            created.append(name)
        atomic_write(path, json.dumps({"keys": created}).encode() + b"\n")
