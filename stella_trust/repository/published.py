"""One published state, many machines: what a served directory publishes (`Published`)
and what a publication may change there (the version guard, the fetchable-files rule).
Writing is repository/pushing.py; reading a served state as a client would is served.py.

Two machines that each keep their own counters fork the repository: a timer host that
never saw a release re-signs a timestamp over the pre-release snapshot and the release
disappears; a release signed on counters four runs behind is refused by every client. So
every command that signs starts from the published state, signs above every version this
machine has seen (repository/ledger.py), and a served directory is only ever written
after the result verified as a client holding the served state would verify it.

What a push compares (decision 10): a version names one content forever, so the files a
client can still fetch — every root, and the snapshot, targets and delegated versions the
served timestamp and snapshot name — must not change bytes (a fork: refused). Any other
older `N.role.json` that differs is history no client can reach any more (an old drive's
copy synced over the served directory): the push writes this workspace's copy, with a
warning, and never lets it block a release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp
from tuf.api.serialization import DeserializationError

from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import RepoError
from stella_trust.repository.source import Source
from stella_trust.repository.state import (
    METADATA_LIMIT,
    ONLINE,
    ROOT_LIMIT,
    State,
    common_root,
    local_state,
    quoted,
    read_served_file,
    version_of,
)


def workspace_of(repo_dir: Path) -> Path:
    """The workspace a repository/ directory belongs to (its ledger lives there)."""
    return repo_dir.parent


def cli_path(repo_dir: Path) -> str:
    """`--path WS` as a hint prints it (absolute, so it can be pasted anywhere)."""
    return str(workspace_of(repo_dir).absolute())


# ---- the served state, read from a directory -----------------------------------------------
@dataclass(frozen=True)
class Published:
    """What clients of a served directory hold: the newest root both sides chain to, and the
    served timestamp/snapshot/targets (for python-tuf's Updater as its local metadata)."""

    root: bytes
    known: dict[str, bytes]
    directory: Path | None = None
    roots: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, directory: Path) -> Published:
        """A workspace's own repository/ (trusted: it verified it when it pulled or signed)."""
        state = local_state(directory)
        if state is None:
            raise RepoError(f"{directory} holds no repository", hint="`trust repo pull --from URL|DIR`")
        held = {f"{r}.json": d for r, d in known(state).items()}
        return cls(root=state.root, known=held, directory=directory, roots=tuple(state.roots))

    def version(self, role: str) -> int:
        """The published version of `role` (0 when it is not served)."""
        if role == "root":
            return Metadata[Root].from_bytes(self.root).signed.version
        data = self.known.get(f"{role}.json")
        return version_of(data) if data else 0


def known(state: State) -> dict[str, bytes]:
    """The current top-level roles of a state, by role name."""
    known = {"targets": state.roles.get("targets")}
    known.update({name: getattr(state, name) for name in ONLINE})
    return {role: data for role, data in known.items() if data is not None}


def served_directory(destination: Path, ours: list[bytes], workspace: Path | None = None) -> Published | None:
    """The served directory's state as its clients hold it, its root chain checked against
    ours: None when nothing is served yet; refused when it serves a root we do not have
    (pull first) or a root chain that forks from ours."""
    metadata = destination / "metadata"
    if not metadata.is_dir():
        return None
    path_option = f" --path {workspace.absolute()}" if workspace is not None else ""
    source = Source(destination)
    k, fork = common_root(source, ours)
    if k == 0 and read_served_file(destination, "metadata/1.root.json", ROOT_LIMIT) is None:
        return None
    if fork is not None or k == 0:
        version = fork or 1
        raise RepoError(
            f"refused: metadata/{version}.root.json is already published with different content; "
            "the root chains forked",
            hint="compare the two repositories; nothing was written",
        )
    newer = read_served_file(destination, f"metadata/{len(ours) + 1}.root.json", ROOT_LIMIT)
    if newer is not None:
        raise RepoError(
            f"refused: {destination} serves root v{len(ours) + 1}, which this workspace does not have",
            hint=f"take it first: `trust repo pull --from {destination.absolute()}{path_option}` and run the "
            "command again",
        )
    served: dict[str, bytes] = {}
    for name in ("timestamp", "snapshot", "targets"):
        data = read_served_file(destination, f"metadata/{name}.json", METADATA_LIMIT)
        if data is not None:
            served[f"{name}.json"] = data
    return Published(root=ours[k - 1], known=served, directory=destination, roots=tuple(ours[:k]))


# ---- the version guard and the fetchable-files rule -------------------------------------------
def guard_versions(repo: Repository, published: Published, hint: str | None = None) -> None:
    """Refuse a publication whose versions do not move forward from the published ones
    (TUF spec 5.4.3/5.5.5: clients refuse them; better refused here, with the reason)."""
    from tuf.api.serialization.json import JSONSerializer

    checks = [
        ("timestamp", repo.timestamp.signed.version, True),
        ("snapshot", repo.snapshot.signed.version, False),
        ("targets", repo.targets.signed.version, False),
        ("root", repo.root.signed.version, False),
    ]
    unchanged_timestamp = published.known.get("timestamp.json") == repo.timestamp.to_bytes(
        JSONSerializer(compact=False)
    )
    for role, ours, strictly in checks:
        theirs = published.version(role)
        if ours < theirs or (strictly and ours == theirs and not unchanged_timestamp):
            raise RepoError(
                f"refused: this would publish {role} v{ours} but v{theirs} is published; this "
                "workspace's repository/ is behind the published one (another machine published)",
                hint=hint
                or "run the same command with `--from` the served repository: it starts from the "
                "published state",
            )


def fetchable(published: Published) -> set[str]:
    """The versioned metadata a client of `published` can fetch now: the snapshot the served
    timestamp names, and the targets roles the served snapshot names."""
    names: set[str] = set()
    try:
        timestamp = published.known.get("timestamp.json")
        if timestamp is not None:
            version = Metadata[Timestamp].from_bytes(timestamp).signed.snapshot_meta.version
            names.add(f"metadata/{version}.snapshot.json")
        snapshot = published.known.get("snapshot.json")
        if snapshot is not None:
            for name, meta in Metadata[Snapshot].from_bytes(snapshot).signed.meta.items():
                role = name.removesuffix(".json")
                names.add(f"metadata/{meta.version}.{quoted(parse.unquote(role))}.json")
    except (DeserializationError, ValueError, KeyError):
        pass  # a damaged served file names nothing; the client check judges it
    return names


def named(repo: Repository) -> set[str]:
    """The versioned metadata `repo` makes clients fetch: its snapshot and targets roles."""
    roles = ["snapshot", "targets", *repo.delegated]
    return {f"metadata/{repo.role_metadata(name).signed.version}.{quoted(name)}.json" for name in roles}


def _is_root(relative: str) -> bool:
    name = relative.removeprefix("metadata/")
    return relative.startswith("metadata/") and name.endswith(".root.json") and name.split(".")[0].isdigit()


def is_versioned(relative: str) -> bool:
    """`metadata/N.role.json` or `targets/...`: files whose name promises fixed content."""
    if relative.startswith("targets/"):
        return True
    name = relative.removeprefix("metadata/")
    return relative.startswith("metadata/") and name.split(".", 1)[0].isdigit()


@dataclass
class Plan:
    """The files a publication writes into a served directory, and what it repairs there."""

    changed: list[tuple[str, bytes | Path]] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


def plan(
    files: Sequence[tuple[str, bytes | Path]],
    published: Published | None,
    consistent: bool,
    workspace: Path | None = None,
    ours: set[str] | None = None,
    online_hint: str | None = None,
) -> Plan:
    """Which files differ from the served ones; refused when a root would change, or when a
    version both the served state and ours name would have other bytes (a fork: clients that
    hold the served one keep it, python-tuf re-uses an unchanged version). Every other
    differing file is history no client reaches once ours is served: repaired."""
    result = Plan()
    if published is None or published.directory is None:
        result.changed = list(files)
        return result
    reachable = fetchable(published) & (ours or set())
    path_option = f" --path {workspace.absolute()}" if workspace is not None else ""
    forks: list[str] = []
    for relative, content in files:
        data = content if isinstance(content, bytes) else content.read_bytes()
        served = read_served_file(published.directory, relative, max(len(data), METADATA_LIMIT))
        if served == data:
            continue
        if served is not None and is_versioned(relative):
            if _is_root(relative) or relative in reachable:
                forks.append(relative)
            elif relative.startswith("metadata/") or consistent:
                result.repaired.append(relative)
        result.changed.append((relative, content))
    if forks:
        forks.sort(key=lambda name: (".snapshot." in name, name))  # the role that forked first
        only_online = all(".snapshot." in name for name in forks)
        raise RepoError(
            f"refused: {', '.join(forks)} {'is' if len(forks) == 1 else 'are'} already published with "
            "different content; the version counters forked (another machine published the same version)",
            hint=online_hint
            if only_online and online_hint
            else "take the published state and keep this one aside: `trust repo pull --from "
            f"{published.directory.absolute()} --force{path_option}`, then stage your change again",
        )
    return result


def verified_chain_start(history: list[bytes]) -> int:
    """The oldest root version from which every later root verifies (each signed by its
    predecessor's threshold and by its own, TUF spec 5.3.4) up to the newest: the version
    whose digest is safe to hand to clients as a pin. Older roots are kept as served history,
    but never offered as a pin (a mirror could have made them up)."""
    start = len(history)
    for version in range(len(history) - 1, 0, -1):
        try:
            older = Metadata[Root].from_bytes(history[version - 1])
            newer = Metadata[Root].from_bytes(history[version])
            older.signed.verify_delegate("root", older.signed_bytes, older.signatures)  # a pin self-verifies
            older.signed.verify_delegate("root", newer.signed_bytes, newer.signatures)
            newer.signed.verify_delegate("root", newer.signed_bytes, newer.signatures)
        except (ValueError, exceptions.RepositoryError, DeserializationError):
            break
        start = version
    return start
