"""Building python-tuf's Updater and fetching targets through it (TUF spec 5.3-5.7).

One construction path for sync, `init --root-sha256` and the conformance client, so
limits, the fetcher (deadlines, stop flag, CA bundle) and the repository layout are
the same everywhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tuf.api.exceptions import BadVersionNumberError
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust._internal._compat_tuf import UpdaterChecks, updater_checks
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.net.fetcher import CountingFetcher, HttpxFetcher
from stella_trust._internal.settings import TrustRepoSettings


def updater_config(settings: TrustRepoSettings) -> UpdaterConfig:
    """python-tuf's limits from the settings: the metadata size bounds (against endless-data
    attacks) and how many root rotations one walk may take (TUF spec 5.3.3)."""
    limits = settings.metadata_limits
    return UpdaterConfig(
        max_root_rotations=settings.max_root_rotations,
        root_max_length=limits.root,
        timestamp_max_length=limits.timestamp,
        snapshot_max_length=limits.snapshot,
        targets_max_length=limits.targets,
    )


def make_fetcher(
    settings: TrustRepoSettings,
    should_stop: Callable[[], bool] | None = None,
    memo: VerificationMemo | None = None,
) -> HttpxFetcher:
    """A fetcher with the settings' timeouts, deadline and CA bundle: sync, `init --root-sha256`,
    `export --depth` and the progress bars build theirs here, so none can fetch with other rules."""
    return HttpxFetcher(
        timeout=settings.request_timeout_seconds,
        deadline=settings.download_deadline_seconds,
        ca_bundle=settings.ca_bundle,
        should_stop=should_stop,
        memo=memo,
    )


def repository_urls(tuf_url: str) -> tuple[str, str]:
    """The metadata and targets base URLs under `tuf_url` (the layout `trust repo` publishes)."""
    base = tuf_url.rstrip("/")
    return f"{base}/metadata/", f"{base}/targets/"


def new_updater(
    metadata_dir: Path,
    metadata_url: str,
    targets_url: str | None,
    fetcher: CountingFetcher,
    config: UpdaterConfig,
    bootstrap: bytes | None,
) -> Updater:
    """The one place an Updater is built (sync and the conformance client share it)."""
    return Updater(str(metadata_dir), metadata_url, None, targets_url, fetcher, config, bootstrap=bootstrap)


def ensure_target(
    updater: Updater,
    info: TargetFile,
    path: Path,
    *,
    force: bool = False,
    scratch_dir: Path | None = None,
) -> bool:
    """Download `info` to `path` unless a verified copy is already there; True if downloaded.

    The download goes to a fresh file (a new inode, outside the targets listing when
    `scratch_dir` is given) renamed into place: `path`, or any fixed side-file name, may be
    a hard link shared with the live generation, and writing through it would change
    trust in place.
    """
    if not force and updater.find_cached_target(info, str(path)) is not None:
        return False
    fd, partial = tempfile.mkstemp(dir=scratch_dir or path.parent, prefix=".download-")
    os.close(fd)
    try:
        updater.download_target(info, partial)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return True


def _fast_forward_keys(metadata_dir: Path) -> dict[str, list[str]]:
    """Timestamp and snapshot keyids in the trusted root python-tuf keeps in `metadata_dir`."""
    try:
        return _keys_of(Metadata[Root].from_file(str(metadata_dir / "root.json")).signed)
    except (OSError, ValueError, DeserializationError):
        return {}


def _bootstrap_keys(bootstrap: bytes) -> dict[str, list[str]]:
    """The same for the root an Updater was started from: python-tuf persists exactly these bytes
    as the `root.json` its refresh begins with (Updater.__init__, `_persist_root`)."""
    try:
        return _keys_of(Metadata[Root].from_bytes(bootstrap).signed)
    except (ValueError, DeserializationError):
        return {}


def _keys_of(root: Root) -> dict[str, list[str]]:
    """Timestamp and snapshot keyids of a root (what a fast-forward recovery rotates)."""
    return {role: sorted(root.roles[role].keyids) for role in (Timestamp.type, Snapshot.type)}


class RepositorySession:
    """One TUF client run against a repository (one Updater: `refresh()` runs once).

    Callers above this package see target info and files, never the Updater itself, so
    `tuf.ngclient` stays behind this one door.
    """

    def __init__(
        self,
        updater: Updater,
        fetcher: CountingFetcher,
        metadata_dir: Path,
        renew: Callable[[], Updater] | None = None,
        *,
        bootstrap: bytes | None = None,
        metadata_url: str = "",
    ) -> None:
        """`renew` builds a fresh Updater for the fast-forward retry (`refresh` can run once per
        Updater); `bootstrap` and `metadata_url` let `updater_checks` tell which bodies python-tuf
        verified."""
        self._live: Updater | None = updater
        self.fetcher = fetcher
        self._metadata_dir = Path(metadata_dir)  # where python-tuf keeps the trusted set
        self._renew = renew
        self._bootstrap = bootstrap
        self._metadata_url = metadata_url
        # What the fetcher saw during the one refresh, on the first Updater, that returned:
        # (start, end) indexes into fetcher.attempted and fetcher.delivered; None otherwise.
        self._refresh_window: tuple[tuple[int, int], tuple[int, int]] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: TrustRepoSettings,
        metadata_dir: Path,
        bootstrap: bytes,
        should_stop: Callable[[], bool] | None = None,
        fetcher: CountingFetcher | None = None,
    ) -> RepositorySession:
        """A host's session: its limits, timeouts and stop flag; trust from `bootstrap`.
        `fetcher` replaces the network (in-process tests serve a repository from memory)."""
        assert settings.tuf_url is not None
        metadata_url, targets_url = repository_urls(settings.tuf_url)
        fetcher = fetcher or make_fetcher(settings, should_stop)
        config = updater_config(settings)

        def renew() -> Updater:
            """A new Updater with the same fetcher, limits and bootstrap (the fast-forward retry
            needs a second)."""
            return new_updater(metadata_dir, metadata_url, targets_url, fetcher, config, bootstrap)

        try:
            updater = renew()
        except BaseException:
            fetcher.close()
            raise
        return cls(updater, fetcher, metadata_dir, renew, bootstrap=bootstrap, metadata_url=metadata_url)

    @classmethod
    def plain(
        cls, metadata_dir: Path, metadata_url: str, targets_url: str | None, max_root_rotations: int
    ) -> RepositorySession:
        """python-tuf's defaults and `metadata_dir/root.json` as trust (the conformance protocol)."""
        fetcher = HttpxFetcher()
        config = UpdaterConfig(max_root_rotations=max_root_rotations)
        updater = new_updater(metadata_dir, metadata_url, targets_url, fetcher, config, None)
        return cls(updater, fetcher, metadata_dir)

    def refresh(self) -> None:
        """TUF spec 5.3-5.6: root walk, timestamp, snapshot, top-level targets.

        TUF spec 5.3.11: when the root walk rotated the timestamp or snapshot keys, the
        trusted timestamp and snapshot must be forgotten (that is how a repository recovers
        from a fast-forward attack). python-tuf keeps a local timestamp that still verifies
        (only the snapshot key rotated) and then refuses the reset versions; so when the
        refresh fails on a version and the walked root rotated those keys, both files are
        dropped and the refresh runs once more on a new Updater (which re-walks nothing: the
        new roots are already in the trusted set).
        """
        asked, got = len(self.fetcher.attempted), len(self.fetcher.delivered)
        try:
            self._updater.refresh()
            self._refresh_window = (
                (asked, len(self.fetcher.attempted)),
                (got, len(self.fetcher.delivered)),
            )
        except BadVersionNumberError:
            # The keys before the walk are the bootstrap's (the root.json the refresh started
            # from), read only on this rare path rather than parsed before every refresh.
            if (
                self._renew is None
                or self._bootstrap is None
                or _fast_forward_keys(self._metadata_dir) == _bootstrap_keys(self._bootstrap)
            ):
                raise
            for name in ("timestamp.json", "snapshot.json"):
                (self._metadata_dir / name).unlink(missing_ok=True)
            self._live = self._renew()
            self._updater.refresh()

    def updater_checks(self) -> UpdaterChecks | None:
        """The top-level files python-tuf's refresh verified, by content, and the root it
        verified them with (_compat_tuf.updater_checks), from what the fetcher saw during that
        refresh only (target look-ups after it fetch delegated roles). None unless the first
        Updater's refresh returned: after the fast-forward retry the second Updater started
        from local roots and files this record cannot see."""
        if self._refresh_window is None or self._bootstrap is None or not self._metadata_url:
            return None
        (asked, asked_end), (got, got_end) = self._refresh_window
        return updater_checks(
            self._bootstrap,
            self._metadata_url,
            self.fetcher.attempted[asked:asked_end],
            self.fetcher.delivered[got:got_end],
        )

    def find(self, name: str) -> TargetFile | None:
        """Target info for `name`, walking delegations (TUF spec 5.6.7)."""
        return self._updater.get_targetinfo(name)

    def ensure(
        self, info: TargetFile, path: Path, *, force: bool = False, scratch_dir: Path | None = None
    ) -> bool:
        """Download unless a verified copy is at `path` (see ensure_target)."""
        return ensure_target(self._updater, info, path, force=force, scratch_dir=scratch_dir)

    @property
    def _updater(self) -> Updater:
        """The live Updater; a session used after `close()` is a bug, raised loudly."""
        if self._live is None:
            raise RuntimeError("repository session used after close()")
        return self._live

    def close(self) -> None:
        """Close the connections and drop the Updater: its trusted set holds every parsed
        targets role, which a 100k-target repository makes ~100 MiB that the commit after
        the session does not need (peak RSS is a fleet host's budget)."""
        self.fetcher.close()
        self._live = None
        self._renew = None
