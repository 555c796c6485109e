"""One refresh: python-tuf's Updater + the targets this host needs -> a new generation.

The Updater does the TUF client workflow (root walk, timestamp, snapshot, targets,
delegations, rollback and freeze checks) inside a private working copy of the
current generation. Only when the working copy differs from the current trust is
it re-verified independently (verify.py, from the anchor), checked for rollback
against what the host held, and committed; an idle sync keeps it as the next sync's
starting point. Any failure discards it, so the previous trust stays exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import TargetFile
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust import errors
from stella_trust.fetch import HttpxFetcher
from stella_trust.selection import TargetSelection
from stella_trust.settings import TrustRepoSettings
from stella_trust.store import Generation, Store
from stella_trust.trust import iso
from stella_trust.verify import (
    VerifiedMetadata,
    rollback_violations,
    verify_generation,
    verify_metadata,
)

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    changed: bool
    versions: dict[str, int]
    targets: dict[str, str]  # target name -> why the host holds it
    downloaded: list[str]
    requests: int
    bytes_received: int
    seconds: float
    urls: list[str] = field(default_factory=list)
    floor: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "versions": self.versions,
            "targets": self.targets,
            "downloaded": self.downloaded,
            "requests": self.requests,
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 4),
        }


def updater_config(settings: TrustRepoSettings) -> UpdaterConfig:
    limits = settings.metadata_limits
    return UpdaterConfig(
        max_root_rotations=settings.max_root_rotations,
        root_max_length=limits.root,
        timestamp_max_length=limits.timestamp,
        snapshot_max_length=limits.snapshot,
        targets_max_length=limits.targets,
        app_user_agent=f"stella-trust/{__import__('stella_trust').__version__}",
    )


def make_fetcher(settings: TrustRepoSettings, should_stop: Callable[[], bool] | None = None) -> HttpxFetcher:
    return HttpxFetcher(
        timeout=settings.request_timeout_seconds,
        deadline=settings.download_deadline_seconds,
        ca_bundle=settings.ca_bundle,
        should_stop=should_stop,
    )


def repository_urls(tuf_url: str) -> tuple[str, str]:
    base = tuf_url.rstrip("/")
    return f"{base}/metadata/", f"{base}/targets/"


def new_updater(
    metadata_dir: Path,
    metadata_url: str,
    targets_url: str | None,
    fetcher: HttpxFetcher,
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


def translate(exc: BaseException, url: str) -> errors.StellaError:
    """python-tuf and OS failures in the words users search for, with a hint."""
    if isinstance(exc, errors.StellaError):
        return exc
    if isinstance(exc.__cause__, errors.StellaError):  # ours, wrapped by python-tuf's fetch()
        return exc.__cause__
    if isinstance(exc, tuf_exceptions.ExpiredMetadataError):
        return errors.MetadataExpiredError(f"TUF metadata expired: {exc}")
    if isinstance(exc, tuf_exceptions.UnsignedMetadataError):
        return errors.SignatureVerificationError(f"Signature verification failed: {exc}")
    if isinstance(exc, tuf_exceptions.BadVersionNumberError):
        return errors.RollbackError(f"Rollback refused: {exc}")
    if isinstance(exc, tuf_exceptions.LengthOrHashMismatchError):
        return errors.TargetMismatchError(f"Length or hash mismatch: {exc}")
    if isinstance(exc, tuf_exceptions.RepositoryError):
        return errors.VerificationError(f"TUF verification failed: {exc}")
    if isinstance(exc, tuf_exceptions.DownloadLengthMismatchError):
        return errors.TargetMismatchError(
            f"Download exceeded its size limit: {exc}",
            hint="an endless or oversized response; raise metadata_limits only if the "
            "repository is known to be that large — cached trust is unchanged",
        )
    if isinstance(exc, tuf_exceptions.DownloadError):
        return errors.RepositoryUnreachableError(f"Repository unreachable: {exc} ({url})")
    if isinstance(exc, DeserializationError):
        return errors.MalformedMetadataError(f"Malformed metadata: {exc}")
    if isinstance(exc, OSError):
        return errors.StellaError(
            f"Cache write failed: {exc}", hint="check free space and permissions on the cache"
        )
    return errors.StellaError(f"Sync failed: {type(exc).__name__}: {exc}")


def sync(
    settings: TrustRepoSettings,
    store: Store,
    *,
    force: bool = False,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SyncResult:
    """Refresh under the store lock, recording the outcome in the state file either way."""
    if not settings.tuf_url:
        raise errors.ConfigError(
            "tuf_url is not set", hint="run `trust init --tuf-url URL ...` or set STELLA_TUF_ROOT_URL"
        )
    if settings.offline_mode and not settings.tuf_url.startswith("file:"):
        raise errors.OfflineModeError(f"offline mode is on: not contacting {settings.tuf_url}")
    store.read_anchor()  # NotInitialisedError before any network use
    with store.lock(settings.lock_timeout_seconds):
        state = store.read_state()
        moment = now or datetime.now(UTC)
        state.last_attempt = iso(moment)
        try:
            result = _refresh(settings, store, state.floor, force=force, should_stop=should_stop)
        except Exception as exc:
            failure = translate(exc, settings.tuf_url)
            _record_failure(store, state, failure.message)
            if failure is exc:
                raise
            raise failure from exc
        except BaseException:  # KeyboardInterrupt, SystemExit: record, re-raise unchanged
            _record_failure(store, state, "interrupted")
            raise
        state.last_sync = iso(moment)
        state.last_error = None
        state.consecutive_failures = 0
        if result.floor:
            state.floor = result.floor
        if result.changed or not state.source:
            state.source = {"kind": "sync", "url": settings.tuf_url, "at": iso(moment)}
        store.write_state(state)
    return result


def _record_failure(store: Store, state: Any, message: str) -> None:
    """Best effort: a full disk must not replace the real error with its own."""
    state.last_error = message
    state.consecutive_failures += 1
    try:
        store.write_state(state)
    except OSError as exc:
        log.warning("could not record the failure in %s: %s", store.state_path, exc)


def _refresh(
    settings: TrustRepoSettings,
    store: Store,
    floor: dict[str, Any],
    *,
    force: bool,
    should_stop: Callable[[], bool] | None,
) -> SyncResult:
    started = time.perf_counter()
    assert settings.tuf_url is not None
    anchor = store.read_anchor()
    base = store.current()
    work = store.begin(None if force else base)
    fetcher = make_fetcher(settings, should_stop)
    try:
        metadata_url, targets_url = repository_urls(settings.tuf_url)
        updater = new_updater(
            work.metadata_dir, metadata_url, targets_url, fetcher, updater_config(settings), anchor
        )
        updater.refresh()
        puller = _UpdaterTargets(updater, work, force=force, should_stop=should_stop)
        wanted = puller.collect(settings)
        for name in work.stored_target_names():
            if name not in wanted:
                work.target_path(name).unlink()
        changed = base is None or force or not _same_tree(work.path, base.path)
        if changed:
            verified = verify_generation(work, anchor)
            _check_service_map(settings, verified)
            refuse_rollback(base, anchor, floor, verified.metadata)
            versions = verified.metadata.versions
            new_floor = verified.metadata.floor()
            store.commit(work)
        else:
            versions = _versions_of(work.metadata_dir)  # the Updater just verified these files
            new_floor = {}
            store.keep_as_spare(work)
    except BaseException:
        store.discard(work)
        raise
    finally:
        fetcher.close()
    return SyncResult(
        changed=changed,
        versions=versions,
        targets=wanted,
        downloaded=puller.downloaded,
        requests=fetcher.requests,
        bytes_received=fetcher.bytes_received,
        seconds=time.perf_counter() - started,
        urls=list(fetcher.urls),
        floor=new_floor,
    )


class _UpdaterTargets(TargetSelection):
    """Targets through python-tuf: info from the Updater, bytes downloaded unless cached."""

    def __init__(
        self,
        updater: Updater,
        work: Generation,
        *,
        force: bool,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        super().__init__()
        self.updater = updater
        self.work = work
        self.force = force
        self.should_stop = should_stop
        self.downloaded: list[str] = []
        self._names: list[str] | None = None

    def find(self, name: str) -> TargetFile | None:
        return self.updater.get_targetinfo(name)

    def names(self) -> list[str]:
        """Candidate names for stem matching; the TargetFile itself always comes from python-tuf."""
        if self._names is None:
            names: dict[str, None] = {}
            for path in sorted(self.work.metadata_dir.glob("*.json")):
                if path.name in ("root.json", "timestamp.json", "snapshot.json"):
                    continue
                try:
                    listed = json.loads(path.read_bytes())["signed"].get("targets") or {}
                except (ValueError, KeyError, TypeError, AttributeError, OSError):
                    continue
                if isinstance(listed, dict):
                    names.update(dict.fromkeys(listed))
            self._names = list(names)
        return self._names

    def store(self, name: str, info: TargetFile) -> Path:
        if self.should_stop is not None and self.should_stop():
            raise errors.StellaError("Sync interrupted", hint="cached trust is unchanged")
        path = self.work.target_path(name)
        if ensure_target(self.updater, info, path, force=self.force, scratch_dir=self.work.path):
            self.downloaded.append(name)
        return path


def _check_service_map(settings: TrustRepoSettings, verified: Any) -> None:
    """The new generation must yield a usable view before it may replace the old one."""
    from stella_trust.api import build_view

    build_view(verified, settings, store_state=None, now=datetime.now(UTC))


def refuse_rollback(
    base: Generation | None, anchor: bytes, floor: dict[str, Any], new: VerifiedMetadata
) -> None:
    """DESIGN decision 4, independently of python-tuf (which `--force` starts afresh).

    Two floors: the versions in the current generation (if it still verifies) and the
    floor recorded at the last commit, which survives a cache that no longer verifies.
    """
    lower = rollback_violations(floor, new)
    if base is not None:
        try:
            held = verify_metadata(base.metadata_dir, anchor).floor()
        except errors.StellaError:
            held = {}
        lower += [v for v in rollback_violations(held, new) if v not in lower]
    if lower:
        raise errors.RollbackError(f"Rollback refused: {', '.join(lower)}")


def _versions_of(metadata_dir: Path) -> dict[str, int]:
    """Role versions for the report, read from files python-tuf verified in this sync."""
    versions = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        document = json.loads((metadata_dir / f"{role}.json").read_bytes())
        versions[role] = int(document["signed"]["version"])
    return versions


def _same_tree(left: Path, right: Path) -> bool:
    """True if both trees hold the same files with the same bytes (hard links short-cut)."""
    pending = [(left, right)]
    while pending:
        a_dir, b_dir = pending.pop()
        with os.scandir(a_dir) as it_a, os.scandir(b_dir) as it_b:
            a_entries = {e.name: e for e in it_a}
            b_entries = {e.name: e for e in it_b}
        if a_entries.keys() != b_entries.keys():
            return False
        for name, a in a_entries.items():
            b = b_entries[name]
            if a.is_symlink() or b.is_symlink():
                if not (a.is_symlink() and b.is_symlink()) or os.readlink(a) != os.readlink(b):
                    return False
            elif a.is_dir():
                if not b.is_dir():
                    return False
                pending.append((Path(a.path), Path(b.path)))
            elif a.inode() != b.inode():
                with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
                    if fa.read() != fb.read():
                        return False
    return True
