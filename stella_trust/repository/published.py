"""One published state, many machines: `pull` a published repository into a workspace
(verified as a client would), `push` a workspace's repository to the served directory
(refused when the served state moved on), and the guard every signing command passes
before it writes.

Two machines that each keep their own counters fork the repository: a timer host that
never saw a release re-signs a timestamp over the pre-release snapshot and the release
disappears; a release signed on counters four runs behind is refused by every client. So
every command that signs starts from the published state and refuses to publish a version
that is not above it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust._internal.fs import atomic_write
from stella_trust.errors import UsageError
from stella_trust.repository.clientcheck import known_metadata, root_of, verify_as_client
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.source import Source, clean_target_name

PULL_AGAIN = "pull the published state first (`--from URL|DIR`, or `trust repo pull`), then run it again"


@dataclass(frozen=True)
class Published:
    """What clients currently hold: the newest root and the timestamp/snapshot/targets."""

    root: bytes
    known: dict[str, bytes]
    directory: Path | None = None  # where it is served from, when it is a directory

    @classmethod
    def of(cls, directory: Path) -> Published:
        return cls(root=root_of(directory), known=known_metadata(directory), directory=directory)

    def version(self, role: str) -> int:
        if role == "root":
            return Metadata[Root].from_bytes(self.root).signed.version
        data = self.known.get(f"{role}.json")
        return Metadata.from_bytes(data).signed.version if data else 0


def guard_versions(repo: Repository, published: Published) -> None:
    """Refuse a publication whose versions do not move forward from the published ones
    (TUF spec 5.4.3/5.5.5: clients refuse them; better refused here, with the reason)."""
    checks = [
        ("timestamp", repo.timestamp.signed.version, True),
        ("snapshot", repo.snapshot.signed.version, False),
        ("targets", repo.targets.signed.version, False),
        ("root", repo.root.signed.version, False),
    ]
    from tuf.api.serialization.json import JSONSerializer

    unchanged_timestamp = published.known.get("timestamp.json") == repo.timestamp.to_bytes(
        JSONSerializer(compact=False)
    )
    for role, ours, strictly in checks:
        theirs = published.version(role)
        if ours < theirs or (strictly and ours == theirs and not unchanged_timestamp):
            raise RepoError(
                f"refused: this would publish {role} v{ours} but v{theirs} is published; this "
                "workspace's repository/ is behind the published one (another machine published)",
                hint=PULL_AGAIN,
            )


def is_versioned(relative: str) -> bool:
    """`metadata/N.role.json` or `targets/...`: files whose name promises fixed content."""
    if relative.startswith("targets/"):
        return True
    name = relative.removeprefix("metadata/")
    return relative.startswith("metadata/") and name.split(".", 1)[0].isdigit()


def guard_rewrites(files: Sequence[tuple[str, bytes | Path]], published: Published) -> None:
    """A version number names one content, forever: refuse to replace a published
    `N.role.json` (or a target file) with different bytes. Two machines that each made
    "targets v3" forked the repository; clients that cached one v3 never see the other
    (python-tuf re-uses a role whose version did not change)."""
    if published.directory is None:
        return
    for relative, content in files:
        if not is_versioned(relative):
            continue
        served = published.directory / relative
        if not served.is_file():
            continue
        data = content if isinstance(content, bytes) else content.read_bytes()
        if served.read_bytes() != data:
            raise RepoError(
                f"refused: {relative} is already published with different content; the version "
                "counters forked (another machine published the same version)",
                hint=PULL_AGAIN,
            )


def release(repo: Repository, published: Published, *, download: list[str] | None = None) -> None:
    """Check `repo` as a client would and only then write it (timestamp last)."""
    guard_versions(repo, published)
    guard_rewrites(list(repo.files()), published)
    verify_as_client(
        repo, published_root=published.root, known=published.known, on_disk=repo.path, download=download
    )
    repo.write()


# ---- pull ------------------------------------------------------------------------------------
def pull(
    source: Source,
    repo_dir: Path,
    *,
    root: bytes | None = None,
    metadata_only: bool = False,
    force: bool = False,
) -> Outcome:
    """Make `repo_dir` the published state of `source`, verified as a client would from the
    workspace's own newest root (or `root` for a new workspace). Nothing is replaced unless
    everything verified. A workspace that published locally what was never served (a fork)
    is refused; `force` keeps that fork aside in `repository.forked-<time>/` and takes the
    published state (still verified from the workspace's root)."""
    if force and (repo_dir / "metadata" / "root.json").is_file():
        try:
            return pull(source, repo_dir, root=root, metadata_only=metadata_only)
        except RepoError as exc:
            if "is behind this workspace" not in exc.message:
                raise
        from stella_trust._internal.timefmt import utcnow

        aside = repo_dir.with_name(f"repository.forked-{utcnow():%Y%m%dT%H%M%S}")
        shutil.copytree(repo_dir, aside)
        for path in (repo_dir / "metadata").iterdir():  # the fork's roles go; the root history stays
            if not path.name.endswith("root.json"):
                path.unlink()
        outcome = pull(source, repo_dir, root=root, metadata_only=metadata_only)
        outcome.warnings.append(f"this workspace's own unserved state was kept in {aside}")
        return outcome
    have_local = (repo_dir / "metadata" / "root.json").is_file()
    if have_local:
        trusted = root_of(repo_dir)
        known = known_metadata(repo_dir)
    elif root is not None:
        trusted, known = root, {}
    else:
        raise UsageError(
            f"{repo_dir} holds no repository yet: pass the root you trust",
            hint="`--root 1.root.json` (from the operator), checked with `trust repo roots` there",
        )
    with tempfile.TemporaryDirectory(prefix="stella-trust-pull-") as tmp:
        metadata_dir = Path(tmp) / "metadata"
        metadata_dir.mkdir()
        for name, data in known.items():
            (metadata_dir / name).write_bytes(data)
        try:
            updater = Updater(
                str(metadata_dir),
                source.base_url + "metadata/",
                str(Path(tmp) / "download"),
                source.base_url + "targets/",
                fetcher=source.fetcher,
                config=UpdaterConfig(targets_max_length=64_000_000, snapshot_max_length=64_000_000),
                bootstrap=trusted,
            )
            _verify_without_expiry(updater)
            updater.refresh()
        except exceptions.BadVersionNumberError as exc:
            raise RepoError(
                f"refused: {source.spec} is behind this workspace ({exc})",
                hint="push this workspace's state if it is the one to serve (`trust repo push --to DIR`), "
                "or take the published one: `trust repo pull --from SRC --force` (yours is kept aside)",
            ) from exc
        except (exceptions.RepositoryError, exceptions.DownloadError, ValueError) as exc:
            raise RepoError(
                f"refused: {source.spec} does not verify from the root this workspace trusts: "
                f"{type(exc).__name__}: {exc}",
                hint="nothing was changed; check the source, or whether the repository was re-created",
            ) from exc
        try:
            files = _verified_files(
                updater, metadata_dir, source, trusted, repo_dir, Path(tmp), metadata_only
            )
        except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
            raise RepoError(
                f"refused: {source.spec} does not serve what its metadata lists: {type(exc).__name__}: {exc}",
                hint="nothing was changed; the served repository is incomplete or damaged",
            ) from exc
    for relative, data in files:
        if (
            not relative.startswith("metadata/")
            or not (repo_dir / relative).is_file()
            or ((repo_dir / relative).read_bytes() != data)
        ):
            atomic_write(repo_dir / relative, data)
    timestamp = Metadata[Timestamp].from_bytes(files[-1][1]).signed
    root_version = Metadata[Root].from_bytes(root_of(repo_dir)).signed.version
    return Outcome(
        f"pulled {source.spec}: root v{root_version}, timestamp v{timestamp.version} "
        f"(verified as a client would) into {repo_dir}",
        details={"root": root_version, "timestamp": timestamp.version},
    )


def _verify_without_expiry(updater: Updater) -> None:
    """A pull verifies signatures, thresholds, versions, lengths and hashes exactly as a
    client does (TUF spec 5.3-5.6), but not expiry: pulling is how the timer host renews an
    expired timestamp or snapshot, so refusing expired ones would lock it out. python-tuf
    has no public switch for this, so the Updater's reference time is moved to the start
    of time (its private `_trusted_set.reference_time`, tuf 7.x; checked, never guessed).
    A rollback is still refused against the workspace's own metadata, and whatever is
    signed next is checked again, with expiry, by `verify_as_client` and by `push`."""
    from datetime import UTC, datetime

    trusted_set = getattr(updater, "_trusted_set", None)
    if trusted_set is None or not isinstance(getattr(trusted_set, "reference_time", None), datetime):
        raise RepoError(
            "this python-tuf version has no Updater reference time to set: "
            "pull cannot renew expired metadata",
            hint="install the python-tuf version pinned in pyproject.toml",
        )
    trusted_set.reference_time = datetime.min.replace(tzinfo=UTC)


def _verified_files(
    updater: Updater,
    metadata_dir: Path,
    source: Source,
    trusted: bytes,
    repo_dir: Path,
    tmp: Path,
    metadata_only: bool,
) -> list[tuple[str, bytes]]:
    """The published files in write order: targets, root history, versioned and unversioned
    roles, the timestamp last."""
    history = _root_history(metadata_dir, source, trusted, repo_dir)
    consistent = bool(Metadata[Root].from_bytes(history[-1]).signed.consistent_snapshot)
    targets = Metadata[Targets].from_file(str(metadata_dir / "targets.json"))
    roles: list[tuple[str, bytes]] = [("targets", (metadata_dir / "targets.json").read_bytes())]
    names = list(targets.signed.targets)
    delegations = targets.signed.delegations
    for name in (delegations.roles or {}) if delegations else {}:
        delegated = _delegated_role(updater, name, source, metadata_dir, targets)
        if delegated is not None:
            role_names, data = delegated
            names.extend(role_names)
            roles.append((name, data))
    for name in names:
        if not clean_target_name(name):
            raise RepoError(f"refused: {source.spec} lists a target named {name!r}, which leaves targets/")
    out: list[tuple[str, bytes]] = []
    for name in names if not metadata_only else []:
        info = updater.get_targetinfo(name)
        if info is None:
            continue
        paths = info.get_prefixed_paths() if consistent else [name]
        local = repo_dir / "targets" / paths[0]
        if local.is_file():
            try:
                with local.open("rb") as handle:
                    info.verify_length_and_hashes(handle)
                continue
            except exceptions.LengthOrHashMismatchError:
                pass
        downloaded = updater.download_target(info, str(tmp / "target"))
        data = Path(downloaded).read_bytes()
        out.extend((f"targets/{p}", data) for p in paths)
    out.extend((f"metadata/{v}.root.json", data) for v, data in enumerate(history, start=1))
    out.append(("metadata/root.json", history[-1]))
    snapshot = (metadata_dir / "snapshot.json").read_bytes()
    for name, data in [*roles, ("snapshot", snapshot)]:
        quoted = parse.quote(name, safe="")
        if consistent:
            out.append((f"metadata/{Metadata.from_bytes(data).signed.version}.{quoted}.json", data))
        out.append((f"metadata/{quoted}.json", data))
    out.append(("metadata/timestamp.json", (metadata_dir / "timestamp.json").read_bytes()))
    return out


def _delegated_role(
    updater: Updater, role: str, source: Source, metadata_dir: Path, targets: Metadata[Targets]
) -> tuple[list[str], bytes] | None:
    """A delegated role's target names and bytes, for every role the targets delegate to
    (an empty one too): verified by python-tuf (`verify_delegate` from the delegating
    targets, the version the snapshot lists), then each name resolved through the
    Updater's own walk. None when the snapshot does not list the role (not published yet)."""
    snapshot = Metadata.from_file(str(metadata_dir / "snapshot.json")).signed
    meta = getattr(snapshot, "meta", {}).get(f"{role}.json")
    if meta is None:
        return None
    path = metadata_dir / f"{parse.quote(role, safe='')}.json"
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        consistent = bool(
            Metadata[Root].from_file(str(metadata_dir / "root.json")).signed.consistent_snapshot
        )
        quoted = parse.quote(role, safe="")
        data = source.read(
            f"metadata/{meta.version}.{quoted}.json" if consistent else f"metadata/{quoted}.json"
        )
        if data is None:
            raise RepoError(
                f"refused: {source.spec} does not serve the delegated role {role!r} its snapshot lists"
            )
    md = Metadata[Targets].from_bytes(data)
    try:
        targets.signed.verify_delegate(role, md.signed_bytes, md.signatures)
    except exceptions.UnsignedMetadataError as exc:
        raise RepoError(f"refused: delegated role {role!r} does not verify: {exc}") from exc
    if md.signed.version != meta.version:
        raise RepoError(
            f"refused: delegated role {role!r} is v{md.signed.version}, the snapshot lists v{meta.version}"
        )
    names = list(md.signed.targets)
    for name in names:
        updater.get_targetinfo(name)
    return names, data


def _root_history(metadata_dir: Path, source: Source, trusted: bytes, repo_dir: Path) -> list[bytes]:
    """Every root version 1..N, for clients anchored anywhere in the history: the ones the
    Updater walked from the trusted root (verified, TUF spec 5.3.4), the trusted root itself,
    and the older ones as served (or as this workspace has them). Older roots are history,
    not trust: nothing here signs over them, and a client anchored on one verifies the walk
    from it itself (Sigstore's roots 1, 3 and 4 do not even parse by today's rules)."""
    anchor = Metadata[Root].from_bytes(trusted).signed.version
    walked = {
        int(p.name.split(".")[0]): p.read_bytes()
        for p in (metadata_dir / "root_history").glob("*.root.json")
        if p.name.split(".")[0].isdigit()
    }
    walked[anchor] = trusted
    newest = max(walked)
    history: list[bytes] = []
    for version in range(1, newest + 1):
        local = repo_dir / "metadata" / f"{version}.root.json"
        data = walked.get(version)
        if data is None:
            served = f"metadata/{version}.root.json"
            data = local.read_bytes() if local.is_file() else source.read(served, 512_000)
        if data is None:
            raise RepoError(
                f"refused: {source.spec} does not serve {version}.root.json",
                hint="clients anchored on older roots walk from them: the history must be complete",
            )
        history.append(data)  # (a workspace's own older roots win over the source's)
    return history


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


# ---- push ------------------------------------------------------------------------------------
PUSH_LOCK = ".stella-trust-push.lock"
PUSH_LOCK_TIMEOUT = 60.0  # seconds a push waits for another one into the same directory


def push(repo_dir: Path, destination: Path) -> Outcome:
    """Copy the workspace's repository into the served directory, the timestamp last, under
    a lock on the destination (two pushers never interleave their files); refused when the
    served state is not older than ours, when a published versioned file would change, or
    when the result, as it will be served, does not verify as a client would."""
    from stella_trust._internal.fs import exclusive_lock

    def busy(holder: str) -> Exception:
        return RepoError(
            f"refused: another push into {destination} is running (pid {holder})",
            hint="wait for it, then pull and push again",
        )

    destination.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(destination / PUSH_LOCK, PUSH_LOCK_TIMEOUT, busy):
        return _push_locked(repo_dir, destination)


def _push_locked(repo_dir: Path, destination: Path) -> Outcome:
    ours = Repository.load(repo_dir)
    served = (destination / "metadata" / "root.json").is_file()
    # A first push serves a repository anew: checked from the newest root, the one this
    # workspace verified (each older link was checked when it was committed or pulled).
    published = Published.of(destination) if served else Published(root=ours.root_history[-1], known={})
    files = _publishable_files(ours, repo_dir)
    guard_versions(ours, published)
    guard_rewrites(files, published)
    changed = [(relative, path) for relative, path in files if _differs(path, destination / relative)]
    verify_as_client(
        ours,
        published_root=published.root,
        known=published.known,
        on_disk=destination if served else None,
        overlay=dict(changed) if served else dict(files),
    )
    for relative, path in sorted(changed, key=lambda item: _push_order(item[0])):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle,
            path.open("rb") as source,
        ):
            shutil.copyfileobj(source, handle)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, target)
    return Outcome(
        f"pushed to {destination}: {len(changed)} file(s), timestamp v{ours.timestamp.signed.version} last",
        details={"copied": len(changed), "timestamp": ours.timestamp.signed.version},
    )


def _publishable_files(repo: Repository, repo_dir: Path) -> list[tuple[str, Path]]:
    """What a push may copy: the repository's own metadata (every root version, the current
    and the versioned roles) and the files of the targets it lists; never a symbolic link,
    never anything else that happens to lie in repository/ (a key file linked there, say)."""
    roles = ["root", "timestamp", "snapshot", "targets", *repo.delegated]
    quoted = {parse.quote(name, safe="") for name in roles}
    files: list[tuple[str, Path]] = []
    for path in sorted((repo_dir / "metadata").iterdir()):
        stem = path.name.removesuffix(".json")
        role = stem.split(".", 1)[1] if stem.split(".", 1)[0].isdigit() and "." in stem else stem
        if path.name.endswith(".json") and role in quoted:
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
    return files


def _differs(path: Path, served: Path) -> bool:
    if not served.is_file():
        return True
    if served.stat().st_size != path.stat().st_size:
        return True
    return served.read_bytes() != path.read_bytes()


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
