"""Nothing unverifiable is ever published: a would-be publication is first fetched and
verified exactly as a client would, with python-tuf's own `Updater`.

The Updater starts from the *currently published* root and holds the currently published
timestamp, snapshot and targets as its trusted local metadata, like a host that synced a
minute ago. So the check covers the whole client workflow (TUF spec 5.3 root walk, 5.4
timestamp, 5.5 snapshot, 5.6 targets, each with its rollback and threshold rules) and
catches a root that replaces the targets key without re-signing targets, a timestamp
from a machine whose counters fell behind, or a missing target file, before a single
byte is written where clients read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from tuf.api import exceptions
from tuf.api.metadata import Targets
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust.repository.metadata import Repository
from stella_trust.repository.outcome import RepoError
from stella_trust.repository.source import LOCAL_BASE, DirectoryFetcher, clean_target_name

REFUSED_HINT = "nothing was published; fix the cause above and run the command again"


def target_names(repo: Repository) -> list[str]:
    """Every target name a client can look up (top-level and delegated), for the check that
    downloads each one as a client would."""
    names = list(repo.targets.signed.targets)
    for md in repo.delegated.values():
        names.extend(md.signed.targets)
    return names


def verify_as_client(
    repo: Repository,
    *,
    published_root: bytes,
    known: Mapping[str, bytes],
    on_disk: Path | None,
    overlay: Mapping[str, bytes | Path] | None = None,
    download: Iterable[str] | None = None,
) -> None:
    """Raise RepoError unless a client trusting `published_root` (and holding the `known`
    timestamp/snapshot/targets) accepts `repo` as it would be served: the files of
    `overlay` (what is about to be written; `repo.files()` when None) over `on_disk`."""
    overlay = dict(repo.files()) if overlay is None else dict(overlay)
    names = target_names(repo)
    for name in names:
        if not clean_target_name(name):
            raise RepoError(f"refused: target name {name!r} leaves targets/", hint=REFUSED_HINT)
    # every listed target is fetched and checked (length and hashes) as it will be served,
    # unless the caller names the ones that changed and vouches for the rest
    wanted = set(names) if download is None else set(download)
    with tempfile.TemporaryDirectory(prefix="stella-trust-check-") as tmp:
        metadata_dir = Path(tmp) / "metadata"
        metadata_dir.mkdir()
        for name, data in known.items():
            (metadata_dir / name).write_bytes(data)
        targets_dir = Path(tmp) / "targets"
        targets_dir.mkdir()
        try:
            updater = Updater(
                str(metadata_dir),
                LOCAL_BASE + "metadata/",
                str(targets_dir),
                LOCAL_BASE + "targets/",
                fetcher=DirectoryFetcher(on_disk, overlay),
                config=UpdaterConfig(
                    prefix_targets_with_hash=repo.consistent_snapshot,
                    targets_max_length=64_000_000,
                    snapshot_max_length=64_000_000,
                ),
                bootstrap=published_root,
            )
            updater.refresh()
            for index, name in enumerate(names):
                info = updater.get_targetinfo(name)
                if info is None:
                    raise RepoError(
                        f"refused: clients would not find target {name!r} through the delegations",
                        hint=REFUSED_HINT,
                    )
                if name in wanted:
                    updater.download_target(info, str(targets_dir / f"{index}"))
                    (targets_dir / f"{index}").unlink(missing_ok=True)
        except (exceptions.RepositoryError, exceptions.DownloadError, ValueError) as exc:
            raise RepoError(
                f"refused: clients would reject this repository: {type(exc).__name__}: {exc}",
                hint=REFUSED_HINT,
            ) from exc
    _verify_delegated(repo)


def _verify_delegated(repo: Repository) -> None:
    """Delegated roles the target walk did not reach (no targets yet) still have to verify
    against their delegation (TUF spec 5.6.3)."""
    for name, md in repo.delegated.items():
        try:
            repo.targets.signed.verify_delegate(name, md.signed_bytes, md.signatures)
        except exceptions.UnsignedMetadataError as exc:
            raise RepoError(
                f"refused: delegated role {name!r} is not signed by its threshold of keys: {exc}",
                hint=f"sign it: `trust repo publish` where a {name} key is at hand",
            ) from exc
        if not isinstance(md.signed, Targets):
            raise RepoError(f"refused: {name}.json is not targets metadata")


def known_metadata(directory: Path) -> dict[str, bytes]:
    """The published timestamp, snapshot and targets a synced client already holds."""
    known = {}
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        path = directory / "metadata" / name
        if path.is_file():
            known[name] = path.read_bytes()
    return known


def root_of(directory: Path) -> bytes:
    """A repository directory's current root, the one its clients already trust."""
    return (directory / "metadata" / "root.json").read_bytes()
