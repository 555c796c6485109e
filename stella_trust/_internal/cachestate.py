"""What a host recorded (state.json): informational fields, the pins retired upstream, and the
rollback floor, parsed once into typed values (decisions 4 and 16). Unsigned: it can only
ever cause a refusal, never trust."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stella_trust.errors import CacheVerificationError

FLOOR_EDITED_HINT = (
    "the cache state was edited on disk; re-initialise the host from the root you trust "
    "(`trust init --force --root ROOT.json` resets the cache and its state)"
)


@dataclass(frozen=True)
class RoleFloor:
    """The highest version of one role this host committed, with the keyids that signed it
    (decision 4: a rotated key set exempts the role, TUF spec 5.3.11)."""

    version: int
    keyids: tuple[str, ...]

    @classmethod
    def parse(cls, role: str, entry: Any) -> RoleFloor:
        """One role's floor from state.json; a malformed entry is refused, never skipped
        (skipping would silently switch the rollback check off)."""
        version = entry.get("version") if isinstance(entry, dict) else None
        keyids = entry.get("keyids") if isinstance(entry, dict) else None
        if (
            not isinstance(version, int)
            or isinstance(version, bool)
            or not isinstance(keyids, list)
            or not all(isinstance(k, str) for k in keyids)
        ):
            raise CacheVerificationError(
                f"state.json: the rollback floor for {role!r} is malformed", hint=FLOOR_EDITED_HINT
            )
        return cls(version, tuple(keyids))

    def to_json(self) -> dict[str, Any]:
        """The entry as state.json holds it (the shape `parse` reads back)."""
        return {"version": self.version, "keyids": list(self.keyids)}


Floor = dict[str, RoleFloor]


def parse_floor(raw: Any) -> Floor:
    """Every role's floor from state.json; a floor that is not a mapping is refused like a malformed
    entry, since skipping it would switch the rollback check off (decision 4)."""
    if not isinstance(raw, dict):
        raise CacheVerificationError("state.json: the rollback floor is malformed", hint=FLOOR_EDITED_HINT)
    return {str(role): RoleFloor.parse(str(role), entry) for role, entry in raw.items()}


@dataclass
class CacheState:
    """What happened last; informational, never a source of trust (but the floor)."""

    last_sync: str | None = None
    last_attempt: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    # Highest role versions this host committed, with the keys that signed them: a
    # rollback floor that survives a cache failing verification (unsigned, so it can
    # only ever cause a refusal, never trust).
    floor: Floor = field(default_factory=dict)
    # Pins the repository stopped listing (retired upstream) at the last sync.
    retired_pins: list[str] = field(default_factory=list)
    # Legacy Sigstore targets (by SHA-256) first seen marked Expired, and when (decision 21): the
    # end of their validity windows. Unsigned: a record can end a window no later than `now`.
    legacy_expired: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheState:
        """The state file's fields; the floor parsed once, here (CacheVerificationError if
        it was edited into something else)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["floor"] = parse_floor(known.get("floor", {}))
        expired = known.get("legacy_expired", {})
        known["legacy_expired"] = (
            {str(k): v for k, v in expired.items() if isinstance(v, str)} if isinstance(expired, dict) else {}
        )
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        """The document state.json holds (`Store.write_state` redacts the URLs in it, decision 18)."""
        document = asdict(self)
        document["floor"] = {role: entry.to_json() for role, entry in self.floor.items()}
        return document
