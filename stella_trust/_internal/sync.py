"""One refresh: python-tuf's Updater + the targets this host needs -> a new generation.

The Updater does the TUF client workflow (root walk, timestamp, snapshot, targets,
delegations, rollback and freeze checks) inside a private working copy of the
current generation. Only when the working copy differs from the current trust is
it re-verified independently (tuf/offline.py, from the anchor), checked for rollback
against what the host held, described against the generation it replaces (in words:
policy/changes.py) and committed; an idle sync keeps it as the next sync's starting point
and describes nothing. Any failure discards it, so the previous trust stays exactly as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stella_trust import errors
from stella_trust._internal._compat_tuf import UpdaterChecks
from stella_trust._internal.cachestate import CacheState, Floor
from stella_trust._internal.gcpause import cyclic_gc_paused
from stella_trust._internal.hostpolicy import trust_policy, view_of
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.net.fetcher import CountingFetcher
from stella_trust._internal.net.mirrors import MirrorFetcher, MirrorRun
from stella_trust._internal.policy.changes import describe_changes
from stella_trust._internal.policy.legacy import expired_record
from stella_trust._internal.redact import redact
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Generation, Store
from stella_trust._internal.synctargets import HeldNames, SessionTargets
from stella_trust._internal.timefmt import iso, parse_iso, utcnow
from stella_trust._internal.tuf.errors import in_host_terms, translate
from stella_trust._internal.tuf.keptroots import (
    adopt_committed_roots,
    drop_refused_committed_roots,
    keep_revoking_roots,
    newest_proven_root,
)
from stella_trust._internal.tuf.offline import (
    VerifiedTrust,
    verify_generation,
)
from stella_trust._internal.tuf.rollback import refuse_rollback
from stella_trust._internal.tuf.updater import RepositorySession, make_fetcher
from stella_trust._internal.tuf.workcopy import below_floor, same_tree, versions_of
from stella_trust.view import TrustView

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    """What one sync did: the versions and targets now held and why, what it downloaded and what
    that cost, its changes in words, and the rollback floor to record in state.json (empty when
    nothing was committed)."""

    changed: bool
    versions: dict[str, int]
    targets: dict[str, str]  # target name -> why the host holds it
    downloaded: list[str]
    requests: int
    bytes_received: int
    seconds: float
    urls: list[str] = field(default_factory=list)
    floor: Floor = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    retired_pins: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()  # what this sync changed, in words (roots, keys, endpoints)
    legacy_expired: dict[str, str] = field(default_factory=dict)  # state.json's record (decision 21)
    mirrors: tuple[dict[str, object], ...] = ()  # per mirror: requests answered, failure (if any)

    def to_json(self) -> dict[str, Any]:
        """The `trust sync --json` result (the floor is not output: state.json records it)."""
        return {
            "changed": self.changed,
            "versions": self.versions,
            "targets": self.targets,
            "downloaded": self.downloaded,
            "requests": self.requests,
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 4),
            "sources": list(self.sources),
            "retired_pins": list(self.retired_pins),
            "changes": list(self.changes),
            **({"mirrors": list(self.mirrors)} if self.mirrors else {}),
        }


def sync(
    settings: TrustRepoSettings,
    store: Store,
    *,
    force: bool = False,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
    fetcher: CountingFetcher | None = None,
    memo: VerificationMemo | None = None,
) -> SyncResult:
    """Refresh under the store lock, recording the outcome in the state file either way.

    `now` stamps the state and judges the new view; python-tuf itself reads the wall clock
    (there is no way to hand it one). `fetcher` replaces the network for in-process tests.
    `memo`: what this process already proved (the agent keeps one for its life; a CLI run
    makes one for the command, decision 14).
    """
    memo = memo or VerificationMemo()
    if not settings.tuf_url:
        raise errors.ConfigError(
            "tuf_url is not set: this host takes its trust from bundles",
            hint="import one (`trust import BUNDLE`), or set tuf_url in the config "
            "(or STELLA_TUF_ROOT_URL) to sync from a repository",
        )
    settings.require_network(f"not contacting {settings.tuf_url}")
    # NotInitialisedError before any network use (and before the lock makes the directory); under
    # the lock, each attempt checks the file is still the one read (`_anchor_under_lock`)
    anchor = store.read_anchor_identified()
    fetcher = fetcher or make_fetcher(settings, should_stop, memo)
    run = MirrorRun.of(settings, fetcher)
    with store.lock(settings.lock_timeout_seconds), cyclic_gc_paused():
        state = store.read_state(memo)
        recorded = state.to_json() if state.records_success else None  # what an idle sync may leave
        moment = now or utcnow()
        state.last_attempt = iso(moment)
        try:
            result = _refresh(
                settings,
                store,
                state,
                moment,
                anchor,
                force=force,
                should_stop=should_stop,
                run=run,
                memo=memo,
            )
        except Exception as exc:
            failure = in_host_terms(
                translate(exc, settings.tuf_url), _holds_trust(store), fetcher.server_clock
            )
            _record_mirrors(settings, state, run, moment)
            _record_failure(store, state, failure.message)
            if failure is exc:
                raise
            raise failure from exc
        except BaseException:  # KeyboardInterrupt, SystemExit: record, re-raise unchanged
            _record_mirrors(settings, state, run, moment)
            _record_failure(store, state, "interrupted")
            raise
        state.last_sync = iso(moment)
        state.last_error = None
        _record_mirrors(settings, state, run, moment)
        # The floor and the retired pins must survive a power cut as surely as the generation
        # they describe: a lost retirement would turn every later sync into "Unknown target".
        durable = list(result.retired_pins) != state.retired_pins
        state.retired_pins = list(result.retired_pins)
        state.consecutive_failures = 0
        durable |= bool(result.floor) and result.floor != state.floor
        if result.floor:
            state.floor = result.floor
        durable |= result.legacy_expired != state.legacy_expired  # the windows' ends (decision 21)
        state.legacy_expired = result.legacy_expired
        if result.changed or not state.source:
            state.source = {"kind": "sync", "url": settings.tuf_url, "at": iso(moment)}
        if durable or not _only_moments_moved(recorded, state, moment):
            store.write_state(state, durable=durable)
        else:
            _touch_or_write(store, state, moment)
    return result


_MOMENTS = ("last_sync", "last_attempt")


def _only_moments_moved(recorded: dict[str, Any] | None, state: CacheState, moment: datetime) -> bool:
    """Whether this success changes state.json in its two moments only: the state read at the start
    recorded a success (`recorded`, None otherwise), everything else is equal, and `moment` is not
    earlier than the success recorded (a `now` set back is written into the content, which the
    mtime cannot move backwards). Then the floor, the retired pins, the legacy record, the source
    and the mirrors' health are the bytes already on disk (decision 4's note on state.json)."""
    if recorded is None:
        return False
    last = parse_iso(recorded["last_sync"])
    if last is None or moment < last:
        return False
    written = state.to_json()
    return all(written[name] == value for name, value in recorded.items() if name not in _MOMENTS)


def _touch_or_write(store: Store, state: CacheState, moment: datetime) -> None:
    """An idle success: its moment as state.json's mtime (`Store.touch_state`), not a rewrite whose
    rename over the file costs a flush on ext4 (auto_da_alloc) on every sync; a file this user may
    not stamp is rewritten as before."""
    try:
        store.touch_state(moment)
    except OSError as exc:
        log.debug("state.json's mtime not set (%s); rewriting it", exc)
        store.write_state(state)


def _holds_trust(store: Store) -> bool:
    """Whether this host serves trust, for a failed sync's hint ("cached trust is unchanged" or
    "holds no trust yet"); a cache that cannot be read is taken as holding some."""
    try:
        return store.current() is not None
    except errors.StellaError:
        return True  # a damaged cache: its own error says so on the next read


def _record_mirrors(settings: TrustRepoSettings, state: CacheState, run: MirrorRun, now: datetime) -> None:
    """Each configured mirror's health after this sync, in state.json (nothing recorded for a host
    without mirrors: its state.json stays as it was)."""
    if settings.mirrors:
        state.mirrors = run.health(state.mirrors, now)


def _mirror_fault(failure: errors.StellaError) -> bool:
    """A failure another mirror may not have (net/mirrors.py, per sync): anything the repository
    served or withheld, never this host's own trouble (a full disk, the lock, a stop request)."""
    return isinstance(failure, errors.RepositoryError | errors.UnknownTargetError)


def _record_failure(store: Store, state: CacheState, message: str) -> None:
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
    state: CacheState,
    now: datetime,
    anchor: tuple[bytes, FileIdentity],
    *,
    force: bool,
    should_stop: Callable[[], bool] | None,
    run: MirrorRun,
    memo: VerificationMemo,
) -> SyncResult:
    """One sync inside the lock: an attempt per mirror until one succeeds (net/mirrors.py). An
    attempt that fails for the repository's reasons (unreachable, refused, incomplete) is
    discarded whole and the sync starts again from the held trust on the next mirror, so one
    attempt is one consistent TUF walk and nothing refused reaches the cache; without mirrors
    there is one attempt and its error is the sync's, as ever."""
    started = time.perf_counter()
    for attempt in run.attempts():
        try:
            result = _attempt(
                settings,
                store,
                state,
                now,
                _anchor_under_lock(store, anchor),
                force=force,
                should_stop=should_stop,
                fetcher=attempt,
                memo=memo,
            )
        except Exception as exc:
            if not run.several:
                raise
            failure = translate(exc, attempt.base)
            if not _mirror_fault(failure):
                raise
            run.attempt_failed(attempt, failure)
            if not run.more_after(attempt):
                raise run.exhausted(failure) from exc
            log.info("mirror %s failed, trying the next: %s", redact(attempt.base), failure.message)
            continue
        run.succeeded(attempt)
        result.seconds = time.perf_counter() - started
        result.mirrors = run.summary() if run.several else ()
        return result
    raise AssertionError("a mirror run yields at least one attempt")


def _anchor_under_lock(store: Store, read: tuple[bytes, FileIdentity]) -> bytes:
    """The anchor an attempt verifies from: the bytes `sync` read before taking the lock while the
    file is still the one read (its identity, one `lstat`: `Store.anchor_is`), else read again and
    compared with the config's pin again (an `init --force` that ran while this sync waited for the
    lock: refused, as before, with AnchorChangedError)."""
    data, identity = read
    return data if store.anchor_is(identity) else store.read_anchor()


def _attempt(
    settings: TrustRepoSettings,
    store: Store,
    state: CacheState,
    now: datetime,
    anchor: bytes,
    *,
    force: bool,
    should_stop: Callable[[], bool] | None,
    fetcher: MirrorFetcher,
    memo: VerificationMemo,
) -> SyncResult:
    """One attempt inside the lock: python-tuf refreshes a private working copy, the selection fetches
    the targets this host holds, and only a copy that differs is verified again from the anchor,
    checked for rollback (decision 4), described and committed. Any failure discards the copy,
    keeping a new root that revokes keys the held trust was signed with (TUF spec 5.3.11)."""
    started = time.perf_counter()
    floor = state.floor
    base = store.current()
    work = store.begin(None if force else base)
    drop_refused_committed_roots(store, anchor, base, memo)
    adopt_committed_roots(store, work)
    session: RepositorySession | None = None
    try:
        start = newest_proven_root(anchor, work, memo)
        session = RepositorySession.from_settings(settings, work.metadata_dir, start, should_stop, fetcher)
        session.refresh()
        puller = SessionTargets(session, work, memo, force=force, should_stop=should_stop)
        collected = puller.collect(trust_policy(settings), HeldNames(base), state.retired_pins)
        wanted, sources = collected.wanted, collected.sources
        expired = expired_record(state.legacy_expired, collected.legacy, now)
        # what python-tuf verified, by content (decision 14): worked out only where a check reads it
        checked = session.updater_checks
        session.close()  # the Updater's parsed metadata is not needed past this point
        puller.forget_names()
        work.prune_targets(wanted)
        changed = base is None or not same_tree(work.path, base.path)
        changes: tuple[str, ...] = ()
        if not changed and force:  # re-downloaded and identical: verified in full, not committed
            refuse_rollback(
                None, anchor, floor, _verify_downloaded(work, anchor, None, checked(), memo).metadata
            )
            versions, new_floor = versions_of(work.metadata_dir, memo), {}
            store.keep_as_spare(work)
        elif changed:
            verified = _verify_downloaded(work, anchor, store.committed_roots_dir, checked(), memo)
            # the new trust must yield a usable view, judged with the record it will be committed with
            after = view_of(verified, settings, CacheState(legacy_expired=expired), now)
            refuse_rollback(base, anchor, floor, verified.metadata, memo)
            versions = verified.metadata.versions
            new_floor = verified.metadata.floor()
            changes = _describe(settings, store, state, base, anchor, after, now, memo)
            store.commit(work)
        else:
            versions = versions_of(work.metadata_dir, memo)  # the Updater just verified these files
            if below_floor(versions, floor):  # cheap look first; the full check decides
                verified_work = _verify_downloaded(work, anchor, None, checked(), memo)
                refuse_rollback(None, anchor, floor, verified_work.metadata)
            new_floor = {}
            store.keep_as_spare(work)
    except BaseException as exc:
        if isinstance(exc, Exception) and not isinstance(exc, errors.SyncInterrupted):
            keep_revoking_roots(store, base, work, anchor, memo)
        store.discard(work)
        raise
    finally:
        if session is not None:
            session.close()
    assert session is not None
    used = session.fetcher
    return SyncResult(
        changed=changed,
        versions=versions,
        targets=wanted,
        downloaded=puller.downloaded,
        requests=used.requests,
        bytes_received=used.bytes_received,
        seconds=time.perf_counter() - started,
        urls=list(used.urls),
        floor=new_floor,
        sources=sources,
        retired_pins=collected.retired_pins,
        changes=changes,
        legacy_expired=expired,
    )


def _verify_downloaded(
    work: Generation,
    anchor: bytes,
    committed_roots: Path | None,
    checked: UpdaterChecks | None,
    memo: VerificationMemo,
) -> VerifiedTrust:
    """The independent verification of what this sync downloaded (decision 14). A refusal
    here is the repository's fault, not the cache's: exit 1 with the rule it broke, and the
    held trust (untouched) stays served."""
    try:
        return verify_generation(work, anchor, committed_roots, checked, memo)
    except errors.CacheVerificationError as exc:
        raise errors.VerificationError(f"Repository metadata refused: {exc.message}") from exc


def _describe(
    settings: TrustRepoSettings,
    store: Store,
    state: CacheState,
    base: Generation | None,
    anchor: bytes,
    after: TrustView,
    now: datetime,
    memo: VerificationMemo,
) -> tuple[str, ...]:
    """What this commit changes, in words: the generation being replaced is verified like
    any read (anchor chain, every target) and built into a view, then compared with the new
    one. Only changing syncs get here; an idle sync computes nothing."""
    if base is None:
        return tuple(describe_changes(None, after))
    try:
        verified = verify_generation(base, anchor, store.committed_roots_dir, memo=memo)
        before = view_of(verified, settings, state, now)  # judged with the record it was held under
    except (errors.StellaError, OSError) as exc:
        reason = exc.message if isinstance(exc, errors.StellaError) else str(exc)
        return (f"earlier trust not compared (it does not verify: {reason})", *describe_changes(None, after))
    return tuple(describe_changes(before, after))
