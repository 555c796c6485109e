"""What a host recorded (state.json): informational fields, the pins retired upstream, and the
rollback floor, parsed once into typed values (decisions 4 and 16). Unsigned: it can only
ever cause a refusal, never trust."""

from __future__ import annotations

from typing import Any

from stella_trust.errors import CacheVerificationError

FLOOR_EDITED_HINT = (
    "the cache state was edited on disk; re-initialise the host from the root you trust "
    "(`trust init --force --root ROOT.json` resets the cache and its state)"
)


class RoleFloor:
    """The highest version of one role this host committed, with the keyids that signed it
    (decision 4: a rotated key set exempts the role, TUF spec 5.3.11). A frozen plain class with
    `==`, `hash()` and `repr()` over (version, keyids): neither a dataclass nor a NamedTuple, whose
    classes Python 3.11 builds with exec() at every start-up (issue 24)."""

    __slots__ = ("keyids", "version")
    version: int
    keyids: tuple[str, ...]

    def __init__(self, version: int, keyids: tuple[str, ...]) -> None:
        """The committed version and the keyids that signed it."""
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "keyids", keyids)

    def __eq__(self, other: object) -> bool:
        """Same class, version and keyids."""
        if not isinstance(other, RoleFloor):
            return NotImplemented
        return (self.version, self.keyids) == (other.version, other.keyids)

    def __hash__(self) -> int:
        """Of (version, keyids)."""
        return hash((self.version, self.keyids))

    def __repr__(self) -> str:
        """`RoleFloor(version=..., keyids=...)`."""
        return f"RoleFloor(version={self.version!r}, keyids={self.keyids!r})"

    def __setattr__(self, name: str, value: Any) -> None:
        """Refused: a floor read from state.json is never changed in place."""
        raise AttributeError(f"RoleFloor is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        """Refused, as assignment is."""
        raise AttributeError(f"RoleFloor is frozen: cannot delete {name!r}")

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


class _Mutable:
    """`==` and `repr()` over `FIELDS`, as a mutable dataclass has them (no hash: mutable). The
    two state records below are plain classes, not dataclasses: Python 3.11 compiles each method
    `@dataclass` generates with exec() when the class is made, at every start-up (issue 24)."""

    FIELDS: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        """Same class and equal fields."""
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    def __repr__(self) -> str:
        """`Name(field=value, ...)`."""
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__qualname__}({shown})"


class MirrorHealth(_Mutable):
    """One mirror as the last syncs found it (net/mirrors.py): informational, like the rest of
    state.json but the floor. `url` is redacted (decision 18)."""

    FIELDS = ("url", "last_success", "last_error", "last_error_at")

    def __init__(
        self,
        url: str,
        last_success: str | None = None,
        last_error: str | None = None,
        last_error_at: str | None = None,
    ) -> None:
        """A mirror and its last outcomes (ISO 8601 UTC strings)."""
        self.url = url
        self.last_success = last_success
        self.last_error = last_error
        self.last_error_at = last_error_at

    @classmethod
    def parse(cls, entry: Any) -> MirrorHealth | None:
        """An entry from state.json; a malformed one is dropped (it only ever informs)."""
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            return None
        fields = {k: entry.get(k) for k in ("last_success", "last_error", "last_error_at")}
        if not all(v is None or isinstance(v, str) for v in fields.values()):
            return None
        return cls(entry["url"], **fields)

    @property
    def healthy(self) -> bool | None:
        """Whether its latest outcome was a success (None: never tried). ISO 8601 UTC strings of one
        format order as text."""
        if self.last_success is None and self.last_error_at is None:
            return None
        return (self.last_success or "") > (self.last_error_at or "")

    def to_json(self) -> dict[str, Any]:
        """The entry as state.json holds it, with `healthy` for readers of `trust status --json`."""
        return {**{name: getattr(self, name) for name in self.FIELDS}, "healthy": self.healthy}


def mirror_report(urls: list[str], recorded: list[MirrorHealth]) -> list[dict[str, Any]]:
    """The configured mirrors (`urls`, redacted, in the order a sync tries them), each with its
    recorded health (a mirror never tried has none), for `trust status` and the agent's metrics."""
    held = {entry.url: entry for entry in recorded}
    report = []
    for position, url in enumerate(urls, start=1):
        entry = held.get(url) or MirrorHealth(url)
        report.append({"position": position, **entry.to_json()})
    return report


class CacheState(_Mutable):
    """What happened last; informational, never a source of trust (but the floor)."""

    FIELDS = (
        "last_sync",
        "last_attempt",
        "last_error",
        "consecutive_failures",
        "source",
        "floor",
        "retired_pins",
        "legacy_expired",
        "mirrors",
    )

    def __init__(
        self,
        last_sync: str | None = None,
        last_attempt: str | None = None,
        last_error: str | None = None,
        consecutive_failures: int = 0,
        source: dict[str, Any] | None = None,
        floor: Floor | None = None,
        retired_pins: list[str] | None = None,
        legacy_expired: dict[str, str] | None = None,
        mirrors: list[MirrorHealth] | None = None,
    ) -> None:
        """Every field may be left out (a host that never synced); each gets its own containers."""
        self.last_sync = last_sync
        self.last_attempt = last_attempt
        self.last_error = last_error
        self.consecutive_failures = consecutive_failures
        self.source: dict[str, Any] = {} if source is None else source
        # Highest role versions this host committed, with the keys that signed them: a
        # rollback floor that survives a cache failing verification (unsigned, so it can
        # only ever cause a refusal, never trust).
        self.floor: Floor = {} if floor is None else floor
        # Pins the repository stopped listing (retired upstream) at the last sync.
        self.retired_pins: list[str] = [] if retired_pins is None else retired_pins
        # Legacy Sigstore targets (by SHA-256) first seen marked Expired, and when (decision 21):
        # the end of their validity windows. Unsigned: a record can end a window no later than `now`.
        self.legacy_expired: dict[str, str] = {} if legacy_expired is None else legacy_expired
        # Each configured mirror's last success and last error (net/mirrors.py), in order.
        self.mirrors: list[MirrorHealth] = [] if mirrors is None else mirrors

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheState:
        """The state file's fields; the floor parsed once, here (CacheVerificationError if
        it was edited into something else)."""
        known = {k: data[k] for k in cls.FIELDS if k in data}
        known["floor"] = parse_floor(known.get("floor", {}))
        expired = known.get("legacy_expired", {})
        known["legacy_expired"] = (
            {str(k): v for k, v in expired.items() if isinstance(v, str)} if isinstance(expired, dict) else {}
        )
        raw_mirrors = known.get("mirrors")
        parsed = [MirrorHealth.parse(entry) for entry in raw_mirrors] if isinstance(raw_mirrors, list) else []
        known["mirrors"] = [entry for entry in parsed if entry is not None]
        return cls(**known)

    def copy(self) -> CacheState:
        """A state whose containers are its own, one level deep as `to_json` copies them: the
        floor's entries are frozen and shared, each mirror's record is copied (a sync replaces
        them, and nothing may reach the state it was copied from)."""
        return CacheState(
            self.last_sync,
            self.last_attempt,
            self.last_error,
            self.consecutive_failures,
            dict(self.source),
            dict(self.floor),
            list(self.retired_pins),
            dict(self.legacy_expired),
            [MirrorHealth(m.url, m.last_success, m.last_error, m.last_error_at) for m in self.mirrors],
        )

    @property
    def records_success(self) -> bool:
        """Whether the last attempt recorded is the last success: no error, both moments set and
        equal. Only such a record is carried forward by state.json's mtime (`Store.read_state`)."""
        return self.last_error is None and self.last_sync is not None and self.last_sync == self.last_attempt

    def to_json(self) -> dict[str, Any]:
        """The document state.json holds (`Store.write_state` redacts the URLs in it, decision 18).
        Copied one level deep (every sync writes it; `asdict`'s recursive copy cost more than the
        write): the caller gets its own dicts and lists, the entries in them are strings."""
        document: dict[str, Any] = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if isinstance(value, dict | list):
                value = type(value)(value)
            document[name] = value
        document["floor"] = {role: entry.to_json() for role, entry in self.floor.items()}
        document["mirrors"] = [entry.to_json() for entry in self.mirrors]
        return document
