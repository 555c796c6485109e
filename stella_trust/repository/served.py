"""Read a published repository as a client would, and a workspace's own copy as it is.

`read_served` verifies the served state with python-tuf's own `Updater`: the root walk
from a root this machine already trusts (TUF spec 5.3), then timestamp, snapshot, targets
and every delegated role the snapshot lists (5.4-5.6), lengths and hashes of every target
file. Two deliberate differences from a client, both argued in docs/design.md (decision 10):

- expiry is not enforced (pulling is how an expired timestamp gets renewed);
- the workspace's own timestamp, snapshot and targets are **not** given to the Updater as
  trusted metadata. python-tuf compares versions only, and keeps its own copy when the
  versions are equal, so two machines' "targets v8" would look identical. The served state
  is read on its own and compared with the workspace's, bytes and versions, in
  repository/merge.py, which also decides what a served rollback means.

The Updater starts from the newest root both sides hold byte for byte (`common_root`), so
a workspace that committed a root the served directory does not have yet (or lost it to a
plain copy of an old drive) still reads the served state under the root that signed it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust._internal._compat_tuf import ignore_expiry
from stella_trust.errors import UsageError
from stella_trust.repository.outcome import RepoError
from stella_trust.repository.source import (
    UNSAFE_HINT,
    Source,
    UnsafeDownload,
    clean_target_name,
)
from stella_trust.repository.state import (
    METADATA_LIMIT,
    ROOT_LIMIT,
    State,
    quoted,
    served_history,
    version_of,
)


@dataclass
class Served:
    """A verified served state, its target files, and where it came from."""

    source: Source
    state: State
    target_files: list[tuple[str, bytes]]  # targets/<name> -> bytes (only those not held locally)
    walked_from: int  # the root version the walk started at
    note: str | None = None  # what was ignored, when the served online roles did not verify


def read_served(
    source: Source,
    trusted: bytes,
    local_roots: list[bytes],
    repo_dir: Path,
    *,
    metadata_only: bool = False,
) -> Served:
    """The served state, verified as a client would from `trusted` (expiry excepted);
    `local_roots` fill the history below the walk's start."""
    anchor = Metadata[Root].from_bytes(trusted).signed.version
    with tempfile.TemporaryDirectory(prefix="stella-trust-pull-") as tmp:
        metadata_dir = Path(tmp) / "metadata"
        metadata_dir.mkdir()
        try:
            updater = Updater(
                str(metadata_dir),
                source.base_url + "metadata/",
                str(Path(tmp) / "download"),
                source.base_url + "targets/",
                fetcher=source.fetcher,
                config=UpdaterConfig(targets_max_length=METADATA_LIMIT, snapshot_max_length=METADATA_LIMIT),
                bootstrap=trusted,
            )
            _verify_without_expiry(updater)
            updater.refresh()
        except UnsafeDownload as exc:
            raise RepoError(f"refused: {source.spec}/{exc}", hint=UNSAFE_HINT) from None
        except (exceptions.DownloadError, ValueError) as exc:
            raise RepoError(
                f"refused: {source.spec} does not verify from root v{anchor} this workspace trusts: "
                f"{type(exc).__name__}: {exc}",
                hint="nothing was changed; check the source (a mirror that is slow, too large or down)",
            ) from exc
        except (exceptions.RepositoryError, DeserializationError) as exc:
            walked = _walked_roots(metadata_dir, trusted)
            if walked is None or _serves(source, f"metadata/{max(walked) + 1}.root.json"):
                raise RepoError(
                    f"refused: {source.spec} does not verify from root v{anchor} this workspace trusts: "
                    f"{type(exc).__name__}: {exc}",
                    hint="nothing was changed; check the source, or whether the repository was re-created",
                ) from exc
            return _below_the_roots(source, walked, local_roots, trusted, exc)
        try:
            state, names = _state(updater, metadata_dir, source, trusted, local_roots)
            files = [] if metadata_only else _target_files(updater, state, names, repo_dir, Path(tmp))
        except UnsafeDownload as exc:
            raise RepoError(f"refused: {source.spec}/{exc}", hint=UNSAFE_HINT) from None
        except (exceptions.RepositoryError, exceptions.DownloadError, DeserializationError) as exc:
            raise RepoError(
                f"refused: {source.spec} does not serve what its metadata lists: {type(exc).__name__}: {exc}",
                hint="nothing was changed; the served repository is incomplete or damaged",
            ) from exc
    served = Served(source=source, state=state, target_files=files, walked_from=anchor)
    return _newest_published(served, repo_dir, metadata_only)


def _walked_roots(metadata_dir: Path, trusted: bytes) -> dict[int, bytes] | None:
    """The roots python-tuf's walk verified and kept (None if it kept none)."""
    walked = {
        int(p.name.split(".")[0]): p.read_bytes()
        for p in (metadata_dir / "root_history").glob("*.root.json")
        if p.name.split(".")[0].isdigit()
    }
    walked[Metadata[Root].from_bytes(trusted).signed.version] = trusted
    return walked or None


def _serves(source: Source, relative: str) -> bool:
    try:
        return source.read(relative, ROOT_LIMIT) is not None
    except UsageError:
        return True  # unreadable: a walk that stopped there did not finish


def _below_the_roots(
    source: Source, walked: dict[int, bytes], local_roots: list[bytes], trusted: bytes, exc: Exception
) -> Served:
    """The root walk finished, but the served timestamp, snapshot or targets do not verify
    under its root (an old drive's copy signed by keys since rotated out, say). What clients
    hold is then whatever verifies: the roots, and the served targets (and the roles it
    delegates to) if their own keys signed them; the timestamp and snapshot are treated as
    absent, so the next signing replaces them above every version seen."""
    roots: list[bytes] = []
    for version in range(1, max(walked) + 1):
        data = walked.get(version) or (local_roots[version - 1] if version <= len(local_roots) else None)
        if data is None:
            data = source.read(f"metadata/{version}.root.json", ROOT_LIMIT)
        if data is None:
            raise RepoError(f"refused: {source.spec} does not serve {version}.root.json")
        roots.append(data)
    state = State(roots=roots)
    root = Metadata[Root].from_bytes(roots[-1]).signed
    targets_data = source.read("metadata/targets.json", METADATA_LIMIT)
    try:
        if targets_data is not None:
            targets = Metadata[Targets].from_bytes(targets_data)
            root.verify_delegate("targets", targets.signed_bytes, targets.signatures)
            state.roles["targets"] = targets_data
            delegations = targets.signed.delegations
            for name in (delegations.roles or {}) if delegations else {}:
                data = source.read(f"metadata/{quoted(name)}.json", METADATA_LIMIT)
                if data is None:
                    continue
                delegated = Metadata[Targets].from_bytes(data)
                targets.signed.verify_delegate(name, delegated.signed_bytes, delegated.signatures)
                state.roles[name] = data
    except (exceptions.RepositoryError, DeserializationError, ValueError):
        pass  # an unverifiable targets is not what clients hold either
    note = (
        f"{source.spec} serves a timestamp, snapshot or targets that root v{root.version} does not accept "
        f"({type(exc).__name__}: {exc}): ignored, the next signing replaces them"
    )
    served = Served(source=source, state=state, target_files=[], walked_from=len(roots), note=note)
    return _newest_published(served, Path(), metadata_only=True)


def _newest_published(served: Served, repo_dir: Path, metadata_only: bool) -> Served:
    """A targets role whose current file is older than a `N.role.json` the source still
    serves, signed by that role's keys: the newer one was published (clients may hold it)
    and the current file was put back by a plain copy of an older drive, which overwrites
    and never deletes. What clients may hold is the newer one; the timestamp and snapshot
    that name the older one are then treated as absent (signed again above every version)."""
    state, source = served.state, served.source
    if not state.roles or not state.consistent():
        return served
    root = Metadata[Root].from_bytes(state.root).signed
    raised: list[str] = []
    for role in list(state.roles):
        current = version_of(state.roles[role])
        candidates = source.versions(role) if source.directory is not None else _probe(source, role, current)
        for version in sorted((v for v in candidates if v > current), reverse=True):
            data = served_history(source, role, version)
            if data is None:
                continue
            try:
                md = Metadata[Targets].from_bytes(data)
                if role == "targets":
                    root.verify_delegate("targets", md.signed_bytes, md.signatures)
                else:
                    delegator = Metadata[Targets].from_bytes(state.roles["targets"]).signed
                    delegator.verify_delegate(role, md.signed_bytes, md.signatures)
            except (exceptions.RepositoryError, DeserializationError, ValueError, KeyError):
                continue
            if md.signed.version != version:
                continue
            state.roles[role] = data
            raised.append(f"{role} v{version}")
            if not metadata_only:
                served.target_files += _listed_files(source, md.signed, repo_dir)
            break
    if raised:
        state.timestamp = state.snapshot = None
        served.note = (
            f"{source.spec} serves a timestamp and snapshot naming older versions than the newest published "
            f"{', '.join(raised)} (an older copy synced over it?): the next signing names the newest"
        )
    return served


def _probe(source: Source, role: str, current: int) -> list[int]:
    """Over HTTP nothing is listed: the versions right above `current` that are served."""
    found: list[int] = []
    while len(found) < 16 and served_history(source, role, current + len(found) + 1) is not None:
        found.append(current + len(found) + 1)
    return found


def _listed_files(source: Source, targets: Targets, repo_dir: Path) -> list[tuple[str, bytes]]:
    """The target files `targets` lists that this workspace lacks, each checked (length, hashes)."""
    out = []
    for name, info in targets.targets.items():
        if not clean_target_name(name):
            raise RepoError(f"refused: {source.spec} lists a target named {name!r}, which leaves targets/")
        for path in info.get_prefixed_paths():
            if (repo_dir / "targets" / path).is_file():
                continue
            data = source.read(f"targets/{path}", info.length)
            if data is None:
                raise RepoError(
                    f"refused: {source.spec} does not serve targets/{path}, which {targets.type} lists"
                )
            info.verify_length_and_hashes(data)
            out.append((f"targets/{path}", data))
    return out


def _verify_without_expiry(updater: Updater) -> None:
    """A pull verifies signatures, thresholds, versions, lengths and hashes exactly as a
    client does (TUF spec 5.3-5.6), but not expiry: pulling is how the timer host renews an
    expired timestamp or snapshot, so refusing expired ones would lock it out. python-tuf
    has no public switch for this; the tuf adapter (`_compat_tuf.ignore_expiry`) holds the
    one private attribute it takes, and says when this python-tuf lacks it (never guessed).
    Whatever is signed next is checked again, with expiry, by `verify_as_client`."""
    if not ignore_expiry(updater):
        raise RepoError(
            "this python-tuf version has no Updater reference time to set: "
            "pull cannot renew expired metadata",
            hint="install the python-tuf version pinned in pyproject.toml",
        )


def _state(
    updater: Updater, metadata_dir: Path, source: Source, trusted: bytes, local_roots: list[bytes]
) -> tuple[State, list[str]]:
    roots = _root_history(metadata_dir, source, trusted, local_roots)
    state = State(roots=roots)
    state.timestamp = (metadata_dir / "timestamp.json").read_bytes()
    state.snapshot = (metadata_dir / "snapshot.json").read_bytes()
    state.roles["targets"] = (metadata_dir / "targets.json").read_bytes()
    targets = Metadata[Targets].from_bytes(state.roles["targets"])
    names = list(targets.signed.targets)
    delegations = targets.signed.delegations
    snapshot = Metadata[Snapshot].from_bytes(state.snapshot).signed
    consistent = bool(Metadata[Root].from_bytes(roots[-1]).signed.consistent_snapshot)
    for name in (delegations.roles or {}) if delegations else {}:
        delegated = _delegated_role(updater, name, source, metadata_dir, targets, snapshot, consistent)
        if delegated is not None:
            names.extend(delegated[0])
            state.roles[name] = delegated[1]
    for name in names:
        if not clean_target_name(name):
            raise RepoError(f"refused: {source.spec} lists a target named {name!r}, which leaves targets/")
    Metadata[Timestamp].from_bytes(state.timestamp)  # parsed by the Updater already; typed here
    return state, names


def _target_files(
    updater: Updater, state: State, names: list[str], repo_dir: Path, tmp: Path
) -> list[tuple[str, bytes]]:
    """Every listed target file this workspace does not hold yet, verified (length, hashes)."""
    consistent = state.consistent()
    out: list[tuple[str, bytes]] = []
    for name in names:
        info = updater.get_targetinfo(name)
        if info is None:
            continue
        paths = info.get_prefixed_paths() if consistent else [name]
        local = repo_dir / "targets" / paths[0]
        if local.is_file() and not local.is_symlink():
            try:
                with local.open("rb") as handle:
                    info.verify_length_and_hashes(handle)
                continue
            except exceptions.LengthOrHashMismatchError:
                pass
        downloaded = updater.download_target(info, str(tmp / "target"))
        data = Path(downloaded).read_bytes()
        out.extend((f"targets/{p}", data) for p in paths)
    return out


def _delegated_role(
    updater: Updater,
    role: str,
    source: Source,
    metadata_dir: Path,
    targets: Metadata[Targets],
    snapshot: Snapshot,
    consistent: bool,
) -> tuple[list[str], bytes] | None:
    """A delegated role's target names and bytes: verified by python-tuf (`verify_delegate`
    from the delegating targets, the version the snapshot lists), then each name resolved
    through the Updater's own walk. None when the snapshot does not list the role."""
    meta = snapshot.meta.get(f"{role}.json")
    if meta is None:
        return None
    path = metadata_dir / f"{quoted(role)}.json"
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        data = source.read(
            f"metadata/{meta.version}.{quoted(role)}.json" if consistent else f"metadata/{quoted(role)}.json",
            METADATA_LIMIT,
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


def _root_history(
    metadata_dir: Path, source: Source, trusted: bytes, local_roots: list[bytes]
) -> list[bytes]:
    """Every root version 1..N, for clients anchored anywhere in the history: the ones the
    Updater walked from the trusted root (verified, TUF spec 5.3.4), the trusted root itself,
    and the older ones as this workspace has them (or as served). Older roots are history,
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
        data = walked.get(version)
        if data is None and version <= len(local_roots):
            data = local_roots[version - 1]  # (a workspace's own older roots win over the source's)
        if data is None:
            data = source.read(f"metadata/{version}.root.json", ROOT_LIMIT)
        if data is None:
            raise RepoError(
                f"refused: {source.spec} does not serve {version}.root.json",
                hint="clients anchored on older roots walk from them: the history must be complete",
            )
        history.append(data)
    return history
