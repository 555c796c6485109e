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
from dataclasses import dataclass
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Targets, Timestamp
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust._internal.fs import atomic_write
from stella_trust.errors import UsageError
from stella_trust.repository.clientcheck import known_metadata, root_of, verify_as_client
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.source import Source

PULL_AGAIN = "pull the published state first (`--from URL|DIR`, or `trust repo pull`), then run it again"


@dataclass(frozen=True)
class Published:
    """What clients currently hold: the newest root and the timestamp/snapshot/targets."""

    root: bytes
    known: dict[str, bytes]

    @classmethod
    def of(cls, directory: Path) -> Published:
        return cls(root=root_of(directory), known=known_metadata(directory))

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


def release(repo: Repository, published: Published, *, download: list[str] | None = None) -> None:
    """Check `repo` as a client would and only then write it (timestamp last)."""
    guard_versions(repo, published)
    verify_as_client(
        repo, published_root=published.root, known=published.known, on_disk=repo.path, download=download or []
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
        for name in ("timestamp.json", "snapshot.json", "targets.json"):
            (repo_dir / "metadata" / name).unlink(missing_ok=True)
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
        files = _verified_files(updater, metadata_dir, source, trusted, repo_dir, Path(tmp), metadata_only)
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
        for target in _delegated_names(updater, name, source, metadata_dir, targets):
            names.append(target)
        path = metadata_dir / f"{parse.quote(name, safe='')}.json"
        if path.is_file():
            roles.append((name, path.read_bytes()))
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


def _delegated_names(
    updater: Updater, role: str, source: Source, metadata_dir: Path, targets: Metadata[Targets]
) -> list[str]:
    """Target names of a delegated role; its metadata is verified by python-tuf
    (`verify_delegate` from the delegating targets), then each name resolves through the
    Updater's own walk, which loads and checks the role again against the snapshot."""
    path = metadata_dir / f"{parse.quote(role, safe='')}.json"
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        snapshot = Metadata.from_file(str(metadata_dir / "snapshot.json")).signed
        meta = getattr(snapshot, "meta", {}).get(f"{role}.json")
        consistent = bool(
            Metadata[Root].from_file(str(metadata_dir / "root.json")).signed.consistent_snapshot
        )
        relative = (
            f"metadata/{meta.version}.{parse.quote(role, safe='')}.json"
            if consistent and meta
            else (f"metadata/{parse.quote(role, safe='')}.json")
        )
        data = source.read(relative)
        if data is None:
            return []
    md = Metadata[Targets].from_bytes(data)
    try:
        targets.signed.verify_delegate(role, md.signed_bytes, md.signatures)
    except exceptions.UnsignedMetadataError as exc:
        raise RepoError(f"refused: delegated role {role!r} does not verify: {exc}") from exc
    names = list(md.signed.targets)
    for name in names:
        updater.get_targetinfo(name)
    return names


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
        history.append(data)
    return history


# ---- push ------------------------------------------------------------------------------------
def push(repo_dir: Path, destination: Path) -> Outcome:
    """Copy the workspace's repository into the served directory, the timestamp last;
    refused when the served state is not older than ours or ours does not verify from it."""
    ours = Repository.load(repo_dir)
    served = (destination / "metadata" / "root.json").is_file()
    # A first push serves a repository anew: checked from the newest root, the one this
    # workspace verified (each older link was checked when it was committed or pulled).
    published = Published.of(destination) if served else Published(root=ours.root_history[-1], known={})
    guard_versions(ours, published)
    verify_as_client(ours, published_root=published.root, known=published.known, on_disk=repo_dir, overlay={})
    files = sorted(
        (p for p in repo_dir.rglob("*") if p.is_file()),
        key=lambda p: _push_order(p.relative_to(repo_dir).as_posix()),
    )
    copied = 0
    for path in files:  # (an unchanged timestamp is fine: a root-only commit leaves it alone)
        relative = path.relative_to(repo_dir).as_posix()
        target = destination / relative
        if (
            target.is_file()
            and relative.startswith("targets/")
            and target.stat().st_size == path.stat().st_size
        ):
            continue
        if target.is_file() and target.read_bytes() == path.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            shutil.copyfileobj(path.open("rb"), handle)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, target)
        copied += 1
    return Outcome(
        f"pushed to {destination}: {copied} file(s), timestamp v{ours.timestamp.signed.version} last",
        details={"copied": copied, "timestamp": ours.timestamp.signed.version},
    )


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
