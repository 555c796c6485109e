"""One published state, many machines: `push` a workspace's repository to the served
directory, and `publish_files`, the one way anything reaches a served directory (`pull`,
the other way, is repository/pulling.py).

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

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp
from tuf.api.serialization import DeserializationError

from stella_trust.repository.clientcheck import verify_as_client
from stella_trust.repository.ledger import Ledger
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.source import Source, UnsafeFile, clean_target_name, open_regular
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

PUSH_LOCK = ".stella-trust-push.lock"
PUSH_LOCK_TIMEOUT = 60.0  # seconds a push waits for another one into the same directory


def workspace_of(repo_dir: Path) -> Path:
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


# ---- writing into a served directory -------------------------------------------------------
@contextlib.contextmanager
def push_lock(destination: Path, timeout: float | None = None) -> Iterator[None]:
    """One writer per served directory, for the whole read-sign-write of a command."""
    from stella_trust._internal.fs import exclusive_lock

    def busy(holder: str) -> Exception:
        return RepoError(
            f"refused: another push into {destination} is running (pid {holder})",
            hint="wait for it to finish, then run the same command again",
        )

    destination.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(destination / PUSH_LOCK, PUSH_LOCK_TIMEOUT if timeout is None else timeout, busy):
        yield


def publish_files(
    repo: Repository,
    files: Sequence[tuple[str, bytes | Path]],
    destination: Path,
    *,
    ledger: Ledger | None = None,
    hint: str | None = None,
) -> Outcome:
    """Write `repo` (as `files`) into the served directory: versions guarded, the
    fetchable-files rule applied, the result verified as a client holding the served state
    would, then targets, roots, versioned roles, current roles and the timestamp last.
    The caller holds `push_lock(destination)`."""
    published = served_directory(destination, repo.root_history, workspace_of(repo.path))
    # a fork is named before the counters are
    result = plan(files, published, repo.consistent_snapshot, workspace_of(repo.path), named(repo), hint)
    if published is not None:
        guard_versions(repo, published, hint)
    verify_as_client(
        repo,
        published_root=published.root if published else repo.root_history[-1],
        known=published.known if published else {},
        on_disk=destination if published else None,
        overlay=dict(result.changed) if published else dict(files),
    )
    for relative, content in sorted(result.changed, key=lambda item: _push_order(item[0])):
        data = content if isinstance(content, bytes) else content.read_bytes()
        if relative == "metadata/timestamp.json":
            _timestamp_mark(destination, repo.timestamp.signed.version, data)
        _write_served(destination, relative, data)
    if ledger is not None:
        note_published(ledger, repo)
    warnings = [
        f"repaired {relative} in {destination}: it differed from this workspace's copy, and no client "
        "can fetch it any more (an older copy synced over the served directory)"
        for relative in result.repaired
    ]
    return Outcome(
        f"pushed to {destination}: {len(result.changed)} file(s), "
        f"timestamp v{repo.timestamp.signed.version} last",
        warnings=warnings,
        details={"copied": len(result.changed), "timestamp": repo.timestamp.signed.version},
    )


MARKS_KEPT = 8


def _timestamp_mark(destination: Path, version: int, data: bytes) -> None:
    """`metadata/N.timestamp.json` beside `timestamp.json`: no client reads it, but a plain
    copy of an older drive (which overwrites `timestamp.json` and deletes nothing) cannot take
    it away, so any machine that publishes here later still sees which timestamp version
    clients may hold and signs above it (the snapshot and targets have their `N.role.json`
    for the same reason). The newest few are kept."""
    _write_served(destination, f"metadata/{version}.timestamp.json", data)
    from stella_trust.repository.source import versions_in

    for old in versions_in(destination / "metadata", "timestamp")[:-MARKS_KEPT]:
        (destination / "metadata" / f"{old}.timestamp.json").unlink(missing_ok=True)


def note_published(ledger: Ledger, repo: Repository) -> None:
    """Everything `repo` serves is now what clients may hold."""
    from tuf.api.serialization.json import JSONSerializer

    serializer = JSONSerializer(compact=False)
    for version, data in enumerate(repo.root_history, start=1):
        if version > len(repo.root_history) - 2:
            ledger.saw_served("root", version, data)
    for name in ("timestamp", "snapshot", "targets", *repo.delegated):
        md = repo.role_metadata(name)
        ledger.saw_served(name, md.signed.version, repo._bytes_of(name, md, serializer))


def note_signed(ledger: Ledger, repo: Repository) -> None:
    """Signed here (written to repository/ only): versions burned, not yet published."""
    from tuf.api.serialization.json import JSONSerializer

    serializer = JSONSerializer(compact=False)
    ledger.raise_to("root", repo.root.signed.version)
    for name in ("timestamp", "snapshot", "targets", *repo.delegated):
        md = repo.role_metadata(name)
        ledger.signed_here(name, md.signed.version, repo._bytes_of(name, md, serializer))


def _write_served(destination: Path, relative: str, data: bytes) -> None:
    """Replace one served file (mode 0644), refusing a link anywhere on its way."""
    parts = relative.split("/")
    directory = destination
    for part in parts[:-1]:
        directory = directory / part
        if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
            raise RepoError(
                f"refused: {destination}/{relative}: {part} is a link or not a directory",
                hint="someone with write access to the served directory planted it; remove it and run again",
            )
        directory.mkdir(exist_ok=True)
    target = directory / parts[-1]
    with tempfile.NamedTemporaryFile(dir=directory, prefix=f".{parts[-1]}.", delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, target)


def _push_order(relative: str) -> tuple[int, str]:
    """targets/, then root history, versioned roles, unversioned roles, timestamp.json last."""
    if relative.startswith("targets/"):
        return (0, relative)
    name = relative.rsplit("/", 1)[-1]
    if name == "timestamp.json":
        return (4, relative)
    if name.endswith(".root.json"):
        return (1, relative)
    if name.split(".", 1)[0].isdigit():
        return (2, relative)
    return (3, relative)


def release(
    repo: Repository,
    published: Published,
    *,
    download: list[str] | None = None,
    destination: Path | None = None,
    ledger: Ledger | None = None,
) -> Outcome | None:
    """Check `repo` as a client would and only then write it: into the served directory
    first when there is one (so a refused push leaves this workspace as it was, and the
    same command can simply run again), then into repository/ (timestamp last)."""
    pushed = None
    if destination is not None:
        pushed = publish_files(repo, _with_target_files(repo), destination, ledger=ledger)
    else:
        plan(list(repo.files()), published, repo.consistent_snapshot, None, named(repo))
        guard_versions(repo, published)
        verify_as_client(
            repo, published_root=published.root, known=published.known, on_disk=repo.path, download=download
        )
    repo.write()
    if ledger is not None:
        if destination is None:
            note_signed(ledger, repo)
        ledger.save()
    return pushed


def _with_target_files(repo: Repository) -> list[tuple[str, bytes | Path]]:
    """`repo.files()` and, for every listed target it holds no bytes of (unchanged since it
    was published), the file already in repository/targets/."""
    files: dict[str, bytes | Path] = dict(repo.files())
    listed = [repo.targets, *repo.delegated.values()]
    for name, info in [(n, i) for md in listed for n, i in md.signed.targets.items()]:
        if not clean_target_name(name):
            raise RepoError(f"refused: target name {name!r} leaves targets/")
        for relative in info.get_prefixed_paths() if repo.consistent_snapshot else [name]:
            path = repo.path / "targets" / relative
            if f"targets/{relative}" not in files and path.is_file() and not path.is_symlink():
                files[f"targets/{relative}"] = path
    return list(files.items())


# ---- push ------------------------------------------------------------------------------------
def push(repo_dir: Path, destination: Path, *, locked: bool = False) -> Outcome:
    """Copy the workspace's repository into the served directory (`publish_files`), under
    the destination's lock unless the caller holds it."""
    if locked:
        return _push(repo_dir, destination)
    with push_lock(destination):
        return _push(repo_dir, destination)


def _push(repo_dir: Path, destination: Path) -> Outcome:
    ours = Repository.load(repo_dir)
    files = publishable_files(ours, repo_dir)
    ledger = Ledger.of(workspace_of(repo_dir))
    hint = (
        f"sign above the published versions and push in one step: `trust repo bump-online --force --from "
        f"{destination.absolute()} --to {destination.absolute()} --path {cli_path(repo_dir)}` (where the "
        "snapshot and timestamp "
        "keys are)"
    )
    outcome = publish_files(ours, files, destination, ledger=ledger, hint=hint)
    ledger.save()
    return outcome


def publishable_files(repo: Repository, repo_dir: Path) -> list[tuple[str, Path]]:
    """What a push may copy: the repository's own metadata (every root version, the current
    and the versioned roles) and the files of the targets it lists; never a symbolic link,
    never anything else that happens to lie in repository/ (a key file linked there, say)."""
    roles = ["root", "timestamp", "snapshot", "targets", *repo.delegated]
    names = {parse.quote(name, safe="") for name in roles}
    files: list[tuple[str, Path]] = []
    for path in sorted((repo_dir / "metadata").iterdir()):
        stem = path.name.removesuffix(".json")
        role = stem.split(".", 1)[1] if stem.split(".", 1)[0].isdigit() and "." in stem else stem
        if path.name.endswith(".json") and role in names:
            files.append((f"metadata/{path.name}", path))
    listed = [repo.targets, *repo.delegated.values()]
    for name, info in [(n, i) for md in listed for n, i in md.signed.targets.items()]:
        if not clean_target_name(name):
            raise RepoError(f"refused: target name {name!r} leaves targets/")
        for relative in info.get_prefixed_paths() if repo.consistent_snapshot else [name]:
            path = repo_dir / "targets" / relative
            if path.is_file() or path.is_symlink():
                files.append((f"targets/{relative}", path))
    for relative, path in files:
        if path.is_symlink():
            raise RepoError(
                f"refused: repository/{relative} is a symbolic link", hint="replace it with the file"
            )
        try:
            fd, _ = open_regular(repo_dir, relative)
            os.close(fd)
        except (UnsafeFile, OSError) as exc:
            raise RepoError(
                f"refused: repository/{relative}: {exc}", hint="replace it with the file"
            ) from None
    return files


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
