"""One repository's metadata as bytes (`State`), read from a workspace's own repository/
or from a published one's files, and the limits every such read is bounded by.

A state is compared, never trusted, here: the served one is verified by repository/served.py
(python-tuf's Updater) and judged against the workspace's by repository/merge.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib import parse

from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization import DeserializationError

from stella_trust.repository.outcome import RepoError
from stella_trust.repository.source import Source, UnsafeFile, read_regular

# what reading a damaged or missing metadata file raises (DeserializationError is not a ValueError)
BAD_METADATA = (OSError, ValueError, DeserializationError)
ROOT_LIMIT = 512_000
METADATA_LIMIT = 64_000_000
ONLINE = ("timestamp", "snapshot")


def version_of(data: bytes) -> int:
    """The version a metadata file claims (parsed, not verified: for choosing and naming)."""
    return int(Metadata.from_bytes(data).signed.version)


def quoted(role: str) -> str:
    """A role name as it appears in a file name (a delegated role may hold any character)."""
    return parse.quote(role, safe="")


@dataclass
class State:
    """One repository's metadata as bytes: the root chain (1..N), the current timestamp and
    snapshot, and every targets role (top-level and delegated) the snapshot names."""

    roots: list[bytes]
    timestamp: bytes | None = None
    snapshot: bytes | None = None
    roles: dict[str, bytes] = field(default_factory=dict)

    @property
    def root(self) -> bytes:
        """The newest root's bytes."""
        return self.roots[-1]

    def root_version(self) -> int:
        """The newest root's version (roots are kept 1..N)."""
        return len(self.roots)

    def version(self, role: str) -> int:
        """`role`'s version in this state (0 when it holds none)."""
        if role == "root":
            return len(self.roots)
        data = self.timestamp if role == "timestamp" else self.snapshot if role == "snapshot" else None
        if role not in ONLINE:
            data = self.roles.get(role)
        return version_of(data) if data is not None else 0

    def consistent(self) -> bool:
        """Whether the newest root serves versioned file names (TUF spec 5.7.3)."""
        return bool(Metadata[Root].from_bytes(self.root).signed.consistent_snapshot)


def local_state(repo_dir: Path) -> State | None:
    """The workspace's repository/ as it is on disk (None when it holds none)."""
    metadata = repo_dir / "metadata"
    if not (metadata / "root.json").is_file():
        return None
    roots: list[bytes] = []
    while (metadata / f"{len(roots) + 1}.root.json").is_file():
        roots.append((metadata / f"{len(roots) + 1}.root.json").read_bytes())
    if not roots:
        roots = [(metadata / "root.json").read_bytes()]
    state = State(roots=roots)
    for name in ONLINE:
        path = metadata / f"{name}.json"
        setattr(state, name, path.read_bytes() if path.is_file() else None)
    if (metadata / "targets.json").is_file():
        state.roles["targets"] = (metadata / "targets.json").read_bytes()
        targets = Metadata[Targets].from_bytes(state.roles["targets"]).signed
        for name in (targets.delegations.roles or {}) if targets.delegations else {}:
            path = metadata / f"{quoted(name)}.json"
            if path.is_file():
                state.roles[name] = path.read_bytes()
    return state


def local_history(repo_dir: Path, role: str, version: int) -> bytes | None:
    """The workspace's own `N.role.json` (None when it does not hold that version)."""
    path = repo_dir / "metadata" / f"{version}.{quoted(role)}.json"
    return path.read_bytes() if path.is_file() else None


def common_root(source: Source, roots: list[bytes]) -> tuple[int, int | None]:
    """(k, fork): the newest root version both this workspace and the source hold with the
    same bytes (0: none), and the lowest version above it where the source serves other
    bytes than ours (a forked root chain; None when the source simply has fewer roots)."""
    fork = None
    for version in range(len(roots), 0, -1):
        served = source.read(f"metadata/{version}.root.json", ROOT_LIMIT)
        if served is None:
            continue
        if served == roots[version - 1]:
            return version, fork
        fork = version
    return 0, fork


def served_history(source: Source, role: str, version: int) -> bytes | None:
    """The source's `N.role.json` (consistent snapshots), None when it does not serve it."""
    return source.read(f"metadata/{version}.{quoted(role)}.json", METADATA_LIMIT)


def read_served_file(directory: Path, relative: str, limit: int = METADATA_LIMIT) -> bytes | None:
    """A served directory's file by the safe-open rule (source.read_regular), as one line."""
    try:
        return read_regular(directory, relative, limit)
    except UnsafeFile as exc:
        raise RepoError(
            f"refused: {directory}/{exc}",
            hint="someone with write access to the served directory planted it; remove it and run again",
        ) from None
