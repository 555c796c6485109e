"""Versions only go up: what a workspace has signed, pulled or seen served, per role.

TUF clients refuse a timestamp, snapshot or targets version lower than the one they hold
(spec 5.4.3.2, 5.5.5, 5.6.4 in the spirit of 5.5.5), and python-tuf re-uses a role whose
version did not change without comparing its content. So a machine must never sign a
version at or below one that any client may hold, and the only record of "may hold" a
machine has is what it saw: versions it signed (published or not), pulled, or found
served. `versions.json` keeps, per role, the highest such version (`high`), and the
digests of the versions it saw served (`served`), which is how `pull` tells a local
version that was published (a served rollback, to repair) from one that never was (a
local release, or a fork). It lives beside `repository/`, not in it: `pull --force`
replaces `repository/` and a plain copy of a drive never carries it, and neither may
lower what this machine knows.

The file is only ever raised: a damaged or missing ledger falls back to the versions
`repository/` itself holds (so older workspaces keep working), and a hand-edited one can
only make this machine sign higher versions, which clients accept.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from stella_trust._internal.fs import atomic_write

LEDGER = "versions.json"
KEEP_SERVED = 16  # digests kept per role (enough to recognise any recent publication)


def digest(data: bytes) -> str:
    """The SHA-256 a version is remembered by: a version names one content forever."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Ledger:
    """versions.json: per role, the highest version this workspace has seen or signed, and the
    digests of versions seen served or signed here, so the next signature is always above
    every version some client may hold, and a fork is recognised by content."""

    path: Path
    high: dict[str, int] = field(default_factory=dict)
    served: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> {version: sha256}
    signed: dict[str, dict[str, str]] = field(default_factory=dict)  # signed here, not seen served
    dirty: bool = False

    @classmethod
    def of(cls, workspace: Path) -> Ledger:
        """A workspace's ledger; a damaged file reads as empty (the served directories and
        repository/ still carry the versions, `Workspace.marks`)."""
        path = Path(workspace) / LEDGER
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict):
            return cls(path)
        ledger = cls(path)
        for role, version in (data.get("high") or {}).items():
            if isinstance(role, str) and isinstance(version, int) and version > 0:
                ledger.high[role] = version
        for name in ("served", "signed"):
            table = data.get(name) or {}
            if not isinstance(table, dict):
                continue
            for role, entries in table.items():
                if isinstance(entries, dict):
                    getattr(ledger, name)[role] = {
                        str(v): str(h) for v, h in entries.items() if str(v).isdigit() and isinstance(h, str)
                    }
        return ledger

    def mark(self, role: str) -> int:
        """The highest version of `role` this machine knows of (0: none)."""
        return self.high.get(role, 0)

    def raise_to(self, role: str, version: int) -> None:
        """Never lower: a version once seen or signed is burned."""
        if version > self.high.get(role, 0):
            self.high[role] = version
            self.dirty = True

    def saw_served(self, role: str, version: int, data: bytes) -> None:
        """`data` is what clients may hold as `role` v`version`."""
        self.raise_to(role, version)
        entries = self.served.setdefault(role, {})
        if entries.get(str(version)) != digest(data):
            entries[str(version)] = digest(data)
            for old in sorted(entries, key=int)[:-KEEP_SERVED]:
                del entries[old]
            self.dirty = True
        if self.signed.get(role, {}).pop(str(version), None) is not None:
            self.dirty = True

    def signed_here(self, role: str, version: int, data: bytes) -> None:
        """Signed on this machine; published only once seen served (or pushed)."""
        self.raise_to(role, version)
        if self.served.get(role, {}).get(str(version)) == digest(data):
            return
        entries = self.signed.setdefault(role, {})
        entries[str(version)] = digest(data)
        for old in sorted(entries, key=int)[:-KEEP_SERVED]:
            del entries[old]
        self.dirty = True

    def was_served(self, role: str, version: int, data: bytes) -> bool | None:
        """True when this machine saw exactly `data` served as `role` v`version`; False when
        it signed that version itself and never saw it served; None when it cannot tell."""
        if self.served.get(role, {}).get(str(version)) == digest(data):
            return True
        if str(version) in self.signed.get(role, {}):
            return False
        return None

    def save(self) -> None:
        """Write the ledger if anything changed (atomically)."""
        if not self.dirty:
            return
        document = {"high": self.high, "served": self.served, "signed": self.signed}
        atomic_write(self.path, json.dumps(document, indent=1, sort_keys=True).encode() + b"\n")
        self.dirty = False
