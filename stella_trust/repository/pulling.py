"""`pull`: a published repository into a workspace, verified as a client would
(repository/served.py) and judged by content against what the workspace holds
(repository/merge.py), the versions it saw recorded (repository/ledger.py).

Nothing in the workspace is replaced unless everything verified; a fork is refused (or,
with `--force` and for the timer, settled by taking the served state with the workspace's
kept aside and the commands that stage its releases again); a local version ahead of the
served one is kept (a release not pushed yet, or a served rollback the next push repairs).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api.metadata import Metadata

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.ledger import Ledger
from stella_trust.repository.merge import AHEAD, REPAIR, Merge, merge
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.published import cli_path, known, workspace_of
from stella_trust.repository.served import Served, read_served
from stella_trust.repository.source import Source, versions_in
from stella_trust.repository.state import (
    ONLINE,
    State,
    common_root,
    local_history,
    local_state,
    quoted,
    served_history,
    version_of,
)


@dataclass
class Pulled:
    """What a pull did: its outcome, the merge verdicts, the served state, and what the
    signing command that follows must know (forks settled, online roles clients may hold)."""

    outcome: Outcome
    merge: Merge
    served: State
    prior: dict[str, int]  # the version marks before this pull
    aside: Path | None = None
    # timestamp/snapshot served at a version this machine saw served with other bytes: clients
    # may hold either (python-tuf keeps its own copy of an unchanged version), so they must be
    # signed again above it
    online_forks: list[str] = field(default_factory=list)


def pull(
    source: Source,
    repo_dir: Path,
    *,
    root: bytes | None = None,
    metadata_only: bool = False,
    force: bool = False,
    rebase: bool = False,
) -> Pulled:
    """Make `repo_dir` the published state of `source`, verified as a client would from
    the workspace's own root (or `root` for a new workspace), judged by content against
    what the workspace holds (repository/merge.py). Nothing is replaced unless everything
    verified.

    A fork (same version, other bytes; or a local version never published that the served
    history does not contain) is refused; `force` takes the published state and keeps this
    workspace's in `repository.forked-<time>/`. `rebase` (the timer) takes forks like
    `force` and reports them. A local version that is ahead of the served one is kept: a
    release not pushed yet, or a served rollback the next push repairs."""
    ledger = Ledger.of(workspace_of(repo_dir))
    prior = dict(ledger.high)
    local = local_state(repo_dir)
    if local is not None:
        k, _ = common_root(source, local.roots)
        if k == 0:
            raise RepoError(
                f"refused: {source.spec} does not serve this workspace's root v1..v{len(local.roots)} "
                "(another repository?)",
                hint="check --from; a workspace follows one repository (pull into a new --path for another)",
            )
        trusted, below = local.roots[k - 1], local.roots[:k]
    elif root is not None:
        trusted, below = root, []
    else:
        raise UsageError(
            f"{repo_dir} holds no repository yet: pass the root you trust",
            hint="`--root 1.root.json` (from the operator), checked with `trust repo roots` there",
        )
    served = read_served(source, trusted, below, repo_dir, metadata_only=metadata_only)
    if local is None and (served.state.timestamp is None or "targets" not in served.state.roles):
        raise RepoError(
            f"refused: {source.spec} serves no timestamp and snapshot its root accepts right now "
            f"({served.note or 'an older copy synced over it?'})",
            hint="pull again after the timer's next run (it signs them again), or from another copy",
        )
    consistent = served.state.consistent()
    result = merge(
        local,
        served.state,
        local_history=lambda role, v: local_history(repo_dir, role, v),
        served_history=lambda role, v: served_history(source, role, v) if consistent else None,
        seen=ledger.was_served,
    )
    forks = result.forks
    if forks and not (force or rebase):
        raise RepoError(
            f"refused: {source.spec} and this workspace forked: " + "; ".join(c.describe() for c in forks),
            hint="take the published state and keep this workspace's aside: "
            f"`trust repo pull --from {source.hint_spec} --force --path {cli_path(repo_dir)}`",
        )
    aside = _keep_aside(repo_dir) if forks else None
    _apply(repo_dir, result, served.state, served.target_files)
    online_forks = _record(ledger, served.state, local)
    return Pulled(
        outcome=_outcome(source, repo_dir, served, result, local, aside),
        merge=result,
        served=served.state,
        prior=prior,
        aside=aside,
        online_forks=online_forks,
    )


def _record(ledger: Ledger, served: State, local: State | None) -> list[str]:
    """Note in the ledger what the source serves (clients may hold it) and what this
    workspace held (its versions are burned); returns the online roles served at a version
    this machine saw served with other bytes: clients may hold either, so they must be
    signed again above it."""
    online_forks = [
        f"{role} v{version_of(data)}"
        for role, data in known(served).items()
        if role in ONLINE
        and ledger.was_served(role, version_of(data), data) is None
        and str(version_of(data)) in ledger.served.get(role, {})
    ]
    for version, data in enumerate(served.roots, start=1):
        if version > len(served.roots) - 2:
            ledger.saw_served("root", version, data)
    for role, data in [*known(served).items(), *served.roles.items()]:
        ledger.saw_served(role, version_of(data), data)
    if local is not None:
        for role in ("timestamp", "snapshot", *local.roles):
            ledger.raise_to(role, local.version(role))
    ledger.save()
    return online_forks


def _outcome(
    source: Source, repo_dir: Path, served: Served, result: Merge, local: State | None, aside: Path | None
) -> Outcome:
    """What the pull says: the versions it now holds, a fork it settled (and the commands
    that stage the kept-aside releases again), what it ignored, kept or will repair."""
    now = local_state(repo_dir)
    assert now is not None
    warnings = []
    if aside is not None:
        warnings.append(
            "took the published state over this workspace's ("
            + "; ".join(c.describe() for c in result.forks)
            + f"); this workspace's own state was kept in {aside}"
        )
        assert local is not None
        warnings += _restage(local, served.state, aside, cli_path(repo_dir))
    if served.note:
        warnings.append(served.note)
    warnings += [
        f"{c.describe()}: kept this workspace's; the next push (or the timer's next run) repairs "
        f"{source.spec}"
        for c in result.with_verdict(REPAIR)
    ]
    notes = [c.describe() for c in result.with_verdict(AHEAD)]
    message = (
        f"pulled {source.spec}: root v{now.root_version()}, timestamp v{now.version('timestamp')} "
        f"(verified as a client would) into {repo_dir}"
    )
    if notes:
        message += "\nkept, not published yet: " + "; ".join(notes)
    return Outcome(
        message,
        warnings=warnings,
        details={"root": now.root_version(), "timestamp": now.version("timestamp")},
    )


def _restage(local: State, served: State, aside: Path, path: str) -> list[str]:
    """What the kept-aside copy published that the taken state lacks, as the commands that
    stage it again (a fork's release is not lost, only not published)."""
    from tuf.api.metadata import Targets

    consistent = local.consistent()
    lines = []
    for role, data in local.roles.items():
        ours = Metadata[Targets].from_bytes(data).signed.targets
        theirs_data = served.roles.get(role)
        theirs = Metadata[Targets].from_bytes(theirs_data).signed.targets if theirs_data else {}
        for name, info in ours.items():
            other = theirs.get(name)
            if other is not None and other.hashes == info.hashes and other.length == info.length:
                continue
            file = aside / "targets" / (info.get_prefixed_paths()[0] if consistent else name)
            option = "" if role == "targets" else f" --role {role}"
            lines.append(
                f"{role} lists {name} only in the kept-aside copy: stage it again with "
                f"`trust repo add-target {file.absolute()} --name {name}{option} --path {path}`"
            )
    return lines


def _keep_aside(repo_dir: Path) -> Path:
    aside = repo_dir.with_name(f"repository.forked-{utcnow():%Y%m%dT%H%M%S%f}")
    shutil.copytree(repo_dir, aside, symlinks=True)
    return aside


def _apply(repo_dir: Path, result: Merge, served: State, target_files: list[tuple[str, bytes]]) -> None:
    """Write what the merge takes from the served state, in client-safe order (target files,
    roots, versioned roles, current roles, timestamp last); drop local versioned files of a
    taken role above the taken version (unpublished, and burned in the ledger)."""
    metadata = repo_dir / "metadata"
    for relative, data in target_files:
        atomic_write(repo_dir / relative, data)
    consistent = served.consistent()
    for version, data in enumerate(result.roots, start=1):
        _write_if_differs(metadata / f"{version}.root.json", data)
    for extra in versions_in(metadata, "root"):
        if extra > len(result.roots):
            (metadata / f"{extra}.root.json").unlink()
    _write_if_differs(metadata / "root.json", result.roots[-1])
    taken = {role: data for role, data in result.roles.items() if not result.choices[role].keeps_local}
    # the served timestamp and snapshot name the served roles; when a role of ours is kept,
    # ours are kept too (they name it), and every signing step signs them again above the marks
    online = {} if result.keeps_local else {r: d for r, d in known(served).items() if r in ONLINE}
    ordered = [*taken.items(), *[(r, d) for r, d in online.items() if r == "snapshot"]]
    for role, data in ordered:
        version = version_of(data)
        if consistent:
            _write_if_differs(metadata / f"{version}.{quoted(role)}.json", data)
        for extra in versions_in(metadata, role):
            if extra > version:
                (metadata / f"{extra}.{quoted(role)}.json").unlink()
        _write_if_differs(metadata / f"{quoted(role)}.json", data)
    if "timestamp" in online:
        _write_if_differs(metadata / "timestamp.json", online["timestamp"])


def _write_if_differs(path: Path, data: bytes) -> None:
    if not path.is_file() or path.read_bytes() != data:
        atomic_write(path, data)
