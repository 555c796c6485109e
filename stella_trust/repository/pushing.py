"""Writing into a served directory: `publish_files`, the one way anything reaches it, and
`push`, a workspace's repository/ copied there (`pull`, the other way, is pulling.py).

Every write happens under the directory's lock, after the versions were guarded and the
result verified as a client holding the served state would verify it (published.py says
what may change), in the order a client can never observe half of: target files, roots,
versioned roles, current roles, the timestamp last.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib import parse

from stella_trust._internal.fs import OpenDir, exclusive_lock
from stella_trust.errors import UnsafeFileError
from stella_trust.repository.clientcheck import verify_as_client
from stella_trust.repository.ledger import Ledger
from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.published import (
    Published,
    cli_path,
    guard_versions,
    named,
    plan,
    served_directory,
    workspace_of,
)
from stella_trust.repository.source import UnsafeFile, clean_target_name, open_regular, versions_among

PUSH_LOCK = ".stella-trust-push.lock"
PUSH_LOCK_TIMEOUT = 60.0  # seconds a push waits for another one into the same directory


@contextlib.contextmanager
def push_lock(destination: Path, timeout: float | None = None) -> Iterator[None]:
    """One writer per served directory, for the whole read-sign-write of a command."""

    def busy(holder: str) -> Exception:
        return RepoError(
            f"refused: another push into {destination} is running (pid {holder})",
            hint="wait for it to finish, then run the same command again",
        )

    key = str(destination.absolute())
    with (
        _open_top(destination) as top,
        exclusive_lock(
            destination / PUSH_LOCK, PUSH_LOCK_TIMEOUT if timeout is None else timeout, busy, within=top
        ),
    ):
        held = os.fstat(top.fd)
        _LOCKED[key] = (held.st_dev, held.st_ino)
        try:
            yield
        finally:
            _LOCKED.pop(key, None)


# the served directories this process holds the push lock of: (device, inode) of the directory
# the lock was taken in, so every write can check it goes into that very directory
_LOCKED: dict[str, tuple[int, int]] = {}


def _open_top(destination: Path) -> OpenDir:
    """The served directory itself (made if absent), as the operator named it."""
    try:
        return OpenDir.open(destination, create=True)
    except UnsafeFileError as exc:
        raise RepoError(f"refused: {exc.message.removeprefix('refusing ')}", hint=SERVED_HINT) from None


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
    with ServedWriter(destination) as served:
        for relative, content in sorted(result.changed, key=lambda item: _push_order(item[0])):
            data = content if isinstance(content, bytes) else content.read_bytes()
            if relative == "metadata/timestamp.json":
                _timestamp_mark(served, repo.timestamp.signed.version, data)
            served.write(relative, data)
        served.check_still_served()
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


def _timestamp_mark(served: ServedWriter, version: int, data: bytes) -> None:
    """`metadata/N.timestamp.json` beside `timestamp.json`: no client reads it, but a plain
    copy of an older drive (which overwrites `timestamp.json` and deletes nothing) cannot take
    it away, so any machine that publishes here later still sees which timestamp version
    clients may hold and signs above it (the snapshot and targets have their `N.role.json`
    for the same reason). The newest few are kept."""
    served.write(f"metadata/{version}.timestamp.json", data)
    for old in versions_among(served.names("metadata"), "timestamp")[:-MARKS_KEPT]:
        served.remove(f"metadata/{old}.timestamp.json")


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


SERVED_HINT = "someone with write access to the served directory planted it; remove it and run again"
SWAPPED_HINT = (
    "someone with write access to the served directory is changing it: stop them, put the real "
    "directory back, and push again"
)


class ServedWriter:
    """Every write of a push into the served directory, through one descriptor-relative
    layer (fs.OpenDir, docs/design.md decision 18): the top directory is opened once, each
    subdirectory (`metadata/`, `targets/...`) once, relative to its parent and never through
    a link, and every file is created, renamed and removed relative to the directory held.
    No path is resolved again after the top is open, so a subdirectory swapped for a link
    after the served state was read cannot steer a temp file or a rename into the directory
    the link names (the operator's keys/): the swap is refused when the name is opened, or
    the files land in the directory held and `check_still_served` refuses the push. The top
    is checked to be the very directory whose lock the push holds (`push_lock` takes the lock
    relative to the descriptor it opened): a served directory swapped whole is refused too."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.top = _open_top(destination)
        self.held: dict[str, OpenDir] = {}
        locked = _LOCKED.get(str(destination.absolute()))
        opened = os.fstat(self.top.fd)
        if locked is not None and locked != (opened.st_dev, opened.st_ino):
            self.top.close()
            raise RepoError(
                f"refused: {destination} is no longer the directory this push locked (it was "
                "replaced or moved while the push ran)",
                hint=SWAPPED_HINT,
            )

    def __enter__(self) -> ServedWriter:
        return self

    def __exit__(self, *_: object) -> None:
        for directory in self.held.values():
            directory.close()
        self.top.close()

    def _guarded(self, step: Callable[[], OpenDir]) -> OpenDir:
        """`step` (an open), a refusal of the one rule as a push's one line and hint."""
        try:
            opened = step()
        except UnsafeFileError as exc:
            raise RepoError(f"refused: {exc.message.removeprefix('refusing ')}", hint=SERVED_HINT) from None
        return opened

    def directory(self, relative: str) -> OpenDir:
        """The served subdirectory `relative` ("" for the top), made 0755 when absent."""
        if not relative:
            return self.top
        if relative not in self.held:
            parent, _, name = relative.rpartition("/")
            above = self.directory(parent)
            self.held[relative] = self._guarded(lambda: above.subdir(name, create=True))
        return self.held[relative]

    def write(self, relative: str, data: bytes) -> None:
        """Replace one served file (mode 0644), refusing a link anywhere on its way."""
        parent, _, name = relative.rpartition("/")
        directory = self.directory(parent)
        try:
            directory.write(name, data, 0o644)
        except UnsafeFileError as exc:
            raise RepoError(f"refused: {exc.message.removeprefix('refusing ')}", hint=SWAPPED_HINT) from None

    def names(self, relative: str) -> list[str]:
        """The entries of a served subdirectory, listed through its descriptor."""
        return self.directory(relative).names()

    def remove(self, relative: str) -> None:
        """Remove one served entry (never what a link there names)."""
        parent, _, name = relative.rpartition("/")
        self.directory(parent).unlink(name)

    def check_still_served(self) -> None:
        """Refuse the push when a directory it wrote into is no longer at its name (moved
        away, or swapped for a link, after it was opened): clients would not see the files."""
        for relative, directory in sorted(self.held.items()):
            parent, _, name = relative.rpartition("/")
            if not directory.still_at(self.directory(parent), name):
                raise RepoError(
                    f"refused: {self.destination}/{relative} was replaced while the push wrote into it",
                    hint=SWAPPED_HINT,
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
