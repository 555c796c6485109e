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

import contextlib
import gc
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust._internal._compat_tuf import UpdaterChecks
from stella_trust._internal.fs import open_untrusted, read_untrusted
from stella_trust._internal.hostpolicy import trust_policy, view_of
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.net.fetcher import CountingFetcher
from stella_trust._internal.policy.changes import describe_changes
from stella_trust._internal.policy.selection import TargetSelection
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import CacheState, Floor, Generation, Store
from stella_trust._internal.timefmt import human_duration, iso, utcnow
from stella_trust._internal.tuf.errors import clock_skew, translate
from stella_trust._internal.tuf.offline import (
    MAX_METADATA_FILE,
    MAX_TARGET_FILE,
    VerifiedTrust,
    check_root_rules,
    prove_root_chain,
    verify_generation,
    verify_metadata,
    verify_root_chain,
)
from stella_trust._internal.tuf.rollback import refuse_rollback
from stella_trust._internal.tuf.updater import RepositorySession, make_fetcher
from stella_trust.view import TrustView

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
    floor: Floor = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    retired_pins: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()  # what this sync changed, in words (roots, keys, endpoints)

    def to_json(self) -> dict[str, Any]:
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
    store.read_anchor()  # NotInitialisedError before any network use
    fetcher = fetcher or make_fetcher(settings, should_stop, memo)
    with store.lock(settings.lock_timeout_seconds), _cyclic_gc_paused():
        state = store.read_state()
        moment = now or utcnow()
        state.last_attempt = iso(moment)
        try:
            result = _refresh(
                settings,
                store,
                state,
                moment,
                force=force,
                should_stop=should_stop,
                fetcher=fetcher,
                memo=memo,
            )
        except Exception as exc:
            failure = _in_host_terms(translate(exc, settings.tuf_url), store, fetcher)
            _record_failure(store, state, failure.message)
            if failure is exc:
                raise
            raise failure from exc
        except BaseException:  # KeyboardInterrupt, SystemExit: record, re-raise unchanged
            _record_failure(store, state, "interrupted")
            raise
        state.last_sync = iso(moment)
        state.last_error = None
        # The floor and the retired pins must survive a power cut as surely as the generation
        # they describe: a lost retirement would turn every later sync into "Unknown target".
        durable = list(result.retired_pins) != state.retired_pins
        state.retired_pins = list(result.retired_pins)
        state.consecutive_failures = 0
        durable |= bool(result.floor) and result.floor != state.floor
        if result.floor:
            state.floor = result.floor
        if result.changed or not state.source:
            state.source = {"kind": "sync", "url": settings.tuf_url, "at": iso(moment)}
        store.write_state(state, durable=durable)
    return result


CLOCK_TOLERANCE = timedelta(minutes=5)
_STATE_CLAUSE = re.compile(r"\s*[;,—-]*\s*cached trust is unchanged( and usable until it turns stale)?")


def _in_host_terms(failure: errors.StellaError, store: Store, fetcher: CountingFetcher) -> errors.StellaError:
    """A failed sync's message and hint, true for the host it ran on (issue 20, host states).

    Expired metadata has two causes a host can tell apart: the repository was not renewed,
    or this host's clock is off. The repository server's HTTP Date header (recorded by the
    fetcher, no extra request) decides: beyond CLOCK_TOLERANCE the clock is named, not the
    operator. The hint then ends with what the host still serves: its held trust, or nothing
    (a fresh host must not be told its cached trust is "unchanged and usable")."""
    if isinstance(failure, errors.MetadataExpiredError):
        skew = clock_skew(fetcher.server_clock)
        if skew is not None and abs(skew) > CLOCK_TOLERANCE:
            direction = "ahead of" if skew > timedelta(0) else "behind"
            failure = errors.MetadataExpiredError(
                f"{failure.message} by this host's clock, which is {human_duration(abs(skew))} "
                f"{direction} the repository server's",
                hint="fix this host's clock (`timedatectl`, NTP); the repository is not at fault",
            )
    try:
        holds_trust = store.current() is not None
    except errors.StellaError:
        holds_trust = True  # a damaged cache: its own error says so on the next read
    if not isinstance(failure, errors.SyncInterrupted) and failure.hint:
        base = _STATE_CLAUSE.sub("", failure.hint).rstrip(" ;,—")
        if holds_trust:
            clause = errors.HELD_TRUST_UNCHANGED + (
                " and usable until it turns stale" if isinstance(failure, errors.MetadataExpiredError) else ""
            )
        else:
            clause = errors.NO_TRUST_YET
        failure.hint = f"{base}; {clause}" if base else clause
    return failure


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a sync runs (reference counting still frees
    everything as usual).

    Parsing a large targets role creates about ten objects per target, almost none of them
    in reference cycles, and CPython's collector scans every tracked object again at each
    full collection: at 100k targets a quarter of python-tuf's own refresh was the collector
    (1.41 s -> 1.07 s paused, measured). `sync` runs only in processes stella-trust owns (the
    CLI and the agent), for seconds at most, so the pause cannot starve an application's
    collector; the few cycles a sync leaves (exception tracebacks) are collected as soon as
    the collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    *,
    force: bool,
    should_stop: Callable[[], bool] | None,
    fetcher: CountingFetcher | None,
    memo: VerificationMemo,
) -> SyncResult:
    started = time.perf_counter()
    floor = state.floor
    anchor = store.read_anchor()
    base = store.current()
    work = store.begin(None if force else base)
    _drop_refused_committed_roots(store, anchor, base, memo)
    _adopt_committed_roots(store, work)
    session: RepositorySession | None = None
    try:
        start = _newest_proven_root(anchor, work, memo)
        session = RepositorySession.from_settings(settings, work.metadata_dir, start, should_stop, fetcher)
        session.refresh()
        puller = _SessionTargets(session, work, memo, force=force, should_stop=should_stop)
        held = _held_names(base)
        collected = puller.collect(trust_policy(settings), held, state.retired_pins)
        wanted, sources = collected.wanted, collected.sources
        checked = session.updater_checks()  # what python-tuf verified, by content (decision 14)
        session.close()  # the Updater's parsed metadata is not needed past this point
        puller.forget_names()
        for name in work.stored_target_names():
            if name not in wanted:
                work.target_path(name).unlink()
        changed = base is None or not _same_tree(work.path, base.path)
        changes: tuple[str, ...] = ()
        if not changed and force:  # re-downloaded and identical: verified in full, not committed
            refuse_rollback(
                None, anchor, floor, _verify_downloaded(work, anchor, None, checked, memo).metadata
            )
            versions, new_floor = _versions_of(work.metadata_dir), {}
            store.keep_as_spare(work)
        elif changed:
            verified = _verify_downloaded(work, anchor, store.committed_roots_dir, checked, memo)
            after = view_of(verified, settings, None, now)  # the new trust must yield a usable view
            refuse_rollback(base, anchor, floor, verified.metadata, memo)
            versions = verified.metadata.versions
            new_floor = verified.metadata.floor()
            changes = _describe(settings, store, base, anchor, after, now, memo)
            store.commit(work)
        else:
            versions = _versions_of(work.metadata_dir)  # the Updater just verified these files
            if _below_floor(versions, floor):  # cheap look first; the full check decides
                verified_work = _verify_downloaded(work, anchor, None, checked, memo)
                refuse_rollback(None, anchor, floor, verified_work.metadata)
            new_floor = {}
            store.keep_as_spare(work)
    except BaseException as exc:
        if isinstance(exc, Exception) and not isinstance(exc, errors.SyncInterrupted):
            _keep_revoking_roots(store, base, work, anchor, memo)
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
        before = view_of(verified, settings, None, now)
    except (errors.StellaError, OSError) as exc:
        reason = exc.message if isinstance(exc, errors.StellaError) else str(exc)
        return (f"earlier trust not compared (it does not verify: {reason})", *describe_changes(None, after))
    return tuple(describe_changes(before, after))


class _SessionTargets(TargetSelection):
    """Targets through python-tuf: info from the Updater, bytes downloaded unless cached."""

    def __init__(
        self,
        session: RepositorySession,
        work: Generation,
        memo: VerificationMemo,
        *,
        force: bool,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        super().__init__()
        self.session = session
        self.work = work
        self.memo = memo
        self.force = force
        self.should_stop = should_stop
        self.downloaded: list[str] = []
        self._names: list[str] | None = None

    def find(self, name: str) -> TargetFile | None:
        return self.session.find(name)

    def names(self) -> list[str]:
        """Candidate names for stem matching; the TargetFile itself always comes from python-tuf."""
        if self._names is None:
            names: dict[str, None] = {}
            for path in sorted(self.work.metadata_dir.glob("*.json")):
                if path.name not in ("root.json", "timestamp.json", "snapshot.json"):
                    names.update(dict.fromkeys(_listed_names(path, self.memo)))
            self._names = list(names)
        return self._names

    def forget_names(self) -> None:
        self._names = None

    def read_stored(self, path: Path) -> bytes:
        return read_untrusted(path, MAX_METADATA_FILE)

    def store(self, name: str, info: TargetFile) -> Path:
        if self.should_stop is not None and self.should_stop():
            raise errors.SyncInterrupted("Sync interrupted")
        path = self.work.target_path(name)
        if self.session.ensure(info, path, force=self.force, scratch_dir=self.work.path):
            self.downloaded.append(name)
        return path


def _listed_names(path: Path, memo: VerificationMemo) -> tuple[str, ...]:
    """The target names a metadata file lists, remembered under the file's identity
    (device, inode, size, mtime_ns, ctime_ns): an idle sync's working copy hard-links the
    same files, so the agent parses a 100k-target listing once, not every sync. The names
    only pick a candidate for `<name>.<ext>`; python-tuf then decides whether it exists."""
    try:
        st = path.stat()
    except OSError:
        return ()
    identity = FileIdentity.of(st)
    known = memo.listings.get(identity)
    if known is not None:
        return known
    try:
        listed = json.loads(read_untrusted(path, MAX_METADATA_FILE))["signed"].get("targets") or {}
    except (ValueError, KeyError, TypeError, AttributeError, OSError, errors.UnsafeFileError):
        return ()
    names = tuple(listed) if isinstance(listed, dict) else ()
    memo.listings.put(identity, names)
    return names


def _versions_of(metadata_dir: Path) -> dict[str, int]:
    """Role versions for the report, read from files python-tuf verified in this sync.

    The targets version is the one snapshot pins: python-tuf refuses a targets.json whose
    version differs from it (TUF spec 5.6.5), and reading it from targets.json itself would
    parse a file of 100k targets again for one number."""
    versions = {}
    for role in ("root", "timestamp", "snapshot"):
        document = json.loads(read_untrusted(_role_file(metadata_dir, role), MAX_METADATA_FILE))
        versions[role] = int(document["signed"]["version"])
        if role == "snapshot":
            versions["targets"] = int(document["signed"]["meta"]["targets.json"]["version"])
    return versions


def _role_file(metadata_dir: Path, role: str) -> Path:
    """python-tuf keeps `root.json` as a link to `root_history/N.root.json`: the file it
    names (only inside root_history/), since cached files are never opened through links."""
    path = metadata_dir / f"{role}.json"
    if role != "root":
        return path
    target = os.readlink(path)
    head, _, name = target.partition("/")
    if head != "root_history" or not name or "/" in name:
        raise errors.CacheVerificationError(f"{path} points outside root_history/ ({target})")
    return metadata_dir / target


def _newest_proven_root(anchor: bytes, work: Generation, memo: VerificationMemo) -> bytes:
    """The root the Updater starts from: the newest one the working copy's root history
    proves from the anchor (TUF spec 5.3.4-5.3.5, checked by offline.verify_root_chain,
    whose links this process remembers by content, decision 14), so python-tuf does not
    walk the same local roots again on every sync. A history that does not verify is left
    to python-tuf's own walk from the anchor, which skips invalid local roots and fetches
    them from the repository."""
    try:
        return prove_root_chain(anchor, work.metadata_dir / "root_history", None, memo)[1][-1]
    except errors.StellaError:
        return anchor


def _drop_refused_committed_roots(
    store: Store, anchor: bytes, base: Generation | None, memo: VerificationMemo
) -> None:
    """Roots kept beside the generations must still be ones we accept (decision 16): a kept
    chain that no longer verifies from the anchor, or whose newest root breaks our own rules
    (kept by an earlier release that did not check them), is dropped so that the held trust
    is served again and the repository's next good root heals the host."""
    if not store.committed_roots():
        return
    history = (base.metadata_dir if base is not None else store.root / "absent") / "root_history"
    try:
        newest = verify_root_chain(anchor, history, store.committed_roots_dir, memo)[0]
        check_root_rules(newest.signed, f"root v{newest.signed.version}")
    except errors.StellaError as exc:
        log.warning("dropping the roots kept beside the cached trust: %s", exc.message)
        store.drop_committed_roots()


def _adopt_committed_roots(store: Store, work: Generation) -> None:
    """Roots kept by an earlier failed sync start this one: python-tuf walks root_history
    first, so it trusts them (and the keys they revoke stay revoked)."""
    history = work.metadata_dir / "root_history"
    for path in store.committed_roots():
        target = history / path.name
        if not target.exists():
            history.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def _keep_revoking_roots(
    store: Store, base: Generation | None, work: Generation, anchor: bytes, memo: VerificationMemo
) -> None:
    """TUF spec 5.3.11: the root walk succeeded but a later step failed. If the new root
    revoked keys that signed the cached trust (the cached metadata no longer verifies under
    it), keep the new root: the host must stop trusting the revoked keys now, not after the
    repository is reachable again. Roots that revoke nothing wait for the next sync.

    Nothing refused is persisted (decision 16): a root that breaks one of our own rules
    (offline.check_root_rules) is never kept, whatever python-tuf made of it; it would
    otherwise make every later read fail although the held trust is good. A host with no
    trust yet holds nothing a new root could revoke, so it keeps nothing either."""
    if base is None:
        return
    history = work.metadata_dir / "root_history"
    try:
        newest, chain = verify_root_chain(anchor, history, store.committed_roots_dir, memo)
        held_root = verify_root_chain(
            anchor, base.metadata_dir / "root_history", store.committed_roots_dir, memo
        )
        held = held_root[0].signed.version
        if newest.signed.version <= held:
            return
        check_root_rules(newest.signed, f"root v{newest.signed.version}")
    except errors.StellaError:
        return
    try:
        verify_metadata(base.metadata_dir, anchor, history, memo=memo)
        return  # the cached trust still verifies under the new root: nothing was revoked
    except errors.StellaError:
        pass
    first = newest.signed.version - len(chain) + 1
    store.commit_roots({first + i: data for i, data in enumerate(chain) if first + i > held})
    log.warning(
        "root v%d committed although the sync failed: it revokes keys that signed the cached trust",
        newest.signed.version,
    )


def _held_names(base: Generation | None) -> list[str]:
    """Targets of the generation being replaced (a damaged one holds nothing we can name)."""
    if base is None or not base.path.is_dir():
        return []
    try:
        return base.stored_target_names()
    except errors.StellaError:
        return []


def _below_floor(versions: dict[str, int], floor: Floor) -> bool:
    """True if any version is lower than the floor's (an idle sync re-checks the floor: the
    generation it kept may have been rolled back on disk while the repository stayed put)."""
    return any(role in floor and version < floor[role].version for role, version in versions.items())


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
            elif a.inode() != b.inode() and not _same_bytes(a.path, b.path):
                return False
    return True


def _same_bytes(left: str, right: str) -> bool:
    """Two regular files with the same bytes (anything else planted there differs)."""
    try:
        with open_untrusted(left, MAX_TARGET_FILE) as fa, open_untrusted(right, MAX_TARGET_FILE) as fb:
            while (chunk := fa.read(1 << 20)) == fb.read(1 << 20):
                if not chunk:
                    return True
            return False
    except errors.UnsafeFileError:
        return False
