"""Import a bundle: verified from this host's own trust anchor, or nothing changes.

The bundle is untrusted input (decision 5): the hostile-input reader extracts its metadata
first (nothing else), then it is rebuilt into a generation exactly like a sync — the root
chain walked from this host's anchor, every role verified — and only then are the targets
this host's selection wants extracted (a bundle cannot make a host write a member nobody
selected), verified, checked for rollback and for freshness (signed expiry only) and
committed in one step. A full disk or deep JSON ends in one line, never a traceback.

A directory written by `trust export` is imported the same way: the directory reader
applies the archive's rules and copies what it reads into the same private staging
directory, and from there every step is the one a `.tar.zst` takes (`verify_staged`, also
what `trust snapshot inspect` runs, in a temporary directory, to say whether a bundle
would import).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from stella_trust import errors
from stella_trust._internal.bundle.archive import Extracted, ReadOptions, read_bundle
from stella_trust._internal.bundle.extraction import (
    BundleTargets,
    extract_selected,
    is_metadata_or_log_state,
    member_limit,
    read_to_the_end,
    stage_metadata,
)
from stella_trust._internal.bundle.layout import (
    TLOG_PREFIX,
    BundleError,
    BundleIOError,
    BundleSummary,
    Progress,
    StaleBundleError,
)
from stella_trust._internal.cachestate import CacheState
from stella_trust._internal.hostpolicy import freshness as freshness_at
from stella_trust._internal.hostpolicy import trust_policy, view_of
from stella_trust._internal.policy.legacy import expired_record
from stella_trust._internal.policy.selection import Collected, retired_pin_warning
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.sigstore.sealedlogs import SealedLog, accept_carried, write_sealed
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust._internal.store import Generation, Store
from stella_trust._internal.timefmt import iso, utcnow
from stella_trust._internal.tuf.offline import (
    VerifiedTrust,
    verify_generation,
    verify_metadata,
)
from stella_trust._internal.tuf.rollback import refuse_rollback
from stella_trust.view import Freshness, FreshnessState


def same_trust(new: VerifiedTrust, old: Generation | None, anchor: bytes) -> bool:
    """Whether an import would change nothing: same role versions and same target files as
    the held generation (re-verified). Then only newer log states are written, not a
    generation that would differ from the held one in nothing but its number."""
    if old is None:
        return False
    try:
        held = verify_generation(old, anchor)
    except errors.StellaError:
        return False
    same_files = {n: (i.length, dict(i.hashes)) for n, i in new.target_info.items()} == {
        n: (i.length, dict(i.hashes)) for n, i in held.target_info.items()
    }
    return held.metadata.versions == new.metadata.versions and same_files


def verify_staged(
    settings: TrustRepoSettings,
    store: Store,
    state: CacheState,
    bundle: Path,
    staging: Path,
    work: Generation,
    anchor: bytes,
    first: Extracted,
    now: datetime,
    progress: Progress | None = None,
) -> tuple[VerifiedTrust, Collected]:
    """The one verification every bundle gets, for `import` and `snapshot inspect` (so inspect
    predicts import's verdict by the same code): the metadata `first` staged, laid out as `work`
    and verified from `anchor`; then the targets this host selects, read from `bundle` into
    `staging`, checked and linked into `work`; then the whole generation re-verified, a view
    built from it, and its versions held against the host's current generation and the floor
    in `state` (rollback, TUF 5.3.5/5.4.4). Freshness is the caller's to judge. A pin the
    bundle's signed metadata no longer lists is judged retired against what the host holds
    (`HeldPins.of(store, state)`), exactly as a sync judges it."""
    committed_roots = store.committed_roots_dir
    held = HeldPins.of(store, state)
    try:
        stage_metadata(staging, work, anchor)
    except (errors.StellaError, OSError):
        read_to_the_end(bundle, staging, settings, first, progress)  # a hostile archive says so first
        raise
    try:
        md = verify_metadata(work.metadata_dir, anchor, committed_roots)  # with a memo for this import
        extract_selected(bundle, staging, settings, md, first, progress)
        if not first.whole:  # extract_selected guarantees a whole pass; never commit without one
            raise BundleError("Bundle was not read to its end")
        selection = BundleTargets(md, staging, work, progress)
        collected = selection.collect(trust_policy(settings), held.targets, held.retired)
        verified = verify_generation(work, anchor, committed_roots, memo=md.memo)  # targets checked once
    except errors.CacheVerificationError as exc:
        read_to_the_end(bundle, staging, settings, first, progress)  # a hostile archive says so first
        raise errors.VerificationError(
            f"Bundle does not verify from this host's trust anchor: {exc.message}",
            hint="the bundle is tampered with, or from another repository; nothing was changed",
        ) from exc
    view_of(verified, settings, None, now)  # the service map must hold
    refuse_rollback(store.current(), anchor, state.floor, verified.metadata)
    return verified, collected


@dataclass(frozen=True)
class HeldPins:
    """What a host holds before an import: the current generation's targets and the pins
    recorded as retired (policy/selection.py, `collect`)."""

    targets: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()

    @classmethod
    def of(cls, store: Store, state: CacheState) -> HeldPins:
        """The held targets and retired pins, read tolerantly: a damaged generation must not
        stop an import that would replace it."""
        try:
            current = store.current()
            targets = tuple(current.stored_target_names()) if current is not None else ()
        except (errors.StellaError, OSError):
            targets = ()  # a damaged generation holds nothing we can name
        return cls(targets, tuple(state.retired_pins))


def import_bundle(
    settings: TrustRepoSettings,
    store: Store,
    bundle: Path,
    *,
    verify_manifest: bool = False,
    reject_if_stale: timedelta | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    shown_as: str | None = None,
) -> BundleSummary:
    """Verify `bundle` (a `.tar.zst`, or a directory `trust export` wrote) from this host's
    anchor and make it the current trust, atomically. `progress` sees each read of the
    bundle ("metadata", then "targets") and each staged target's hashing ("hash NAME").
    `shown_as`: what the summary and the state's source call the bundle (a named instance's
    part: `<bundle>#instances/<NAME>.tar.zst`, not the private copy it was read from)."""
    try:
        summary = _import(
            settings, store, bundle, verify_manifest, reject_if_stale, now or utcnow(), progress, shown_as
        )
    except OSError as exc:  # a full or read-only cache filesystem: the disk's fault, not the bundle's
        where = f": {exc.filename}" if exc.filename else ""
        raise BundleIOError(f"Cannot import the bundle: {exc.strerror or exc}{where}") from exc
    except RecursionError:  # a JSON document nested past the parser's depth
        raise BundleError("Bundle holds a JSON document nested too deeply to parse") from None
    return summary


def _import(
    settings: TrustRepoSettings,
    store: Store,
    bundle: Path,
    verify_manifest: bool,
    reject_if_stale: timedelta | None,
    now: datetime,
    progress: Progress | None,
    shown_as: str | None = None,
) -> BundleSummary:
    anchor = store.read_anchor()
    with store.lock(settings.lock_timeout_seconds):
        state = store.read_state()
        staging = store.scratch_dir("import")
        work: Generation | None = None
        try:
            extracted = read_bundle(
                bundle,
                staging,
                ReadOptions(
                    settings.bundle_limits,
                    verify_manifest=verify_manifest,
                    progress=progress,
                    label="metadata",
                    wanted=is_metadata_or_log_state,
                    member_limit=member_limit(settings.metadata_limits),
                    stop_when_read=True,  # the targets pass reads (and checks) the whole archive
                ),
            )
            base = store.current()
            work = store.begin(None)
            verified, collected = verify_staged(  # under the lock: `base` is still current
                settings, store, state, bundle, staging, work, anchor, extracted, now, progress
            )
            retired_notes = [retired_pin_warning(pin) for pin in collected.retired_pins]
            _, logs_to_write, log_notes = carried_log_states(
                settings, store, staging, verified, extracted, now
            )
            freshness = freshness_at(verified.metadata, settings, now)
            summary = BundleSummary(  # files and bytes carried, manifest.json not counted (as export)
                "import",
                shown_as or str(bundle),
                len(extracted.files),  # every member after manifest.json: the whole pass read them all
                extracted.total_bytes,
                verified.metadata.versions,
                freshness,
                manifest_sha256=extracted.manifest_sha256,
            )
            summary.warnings.extend([*retired_notes, *log_notes])
            summary.sealed_logs = [log.to_json(now) for log in logs_to_write]
            if same_trust(verified, base, anchor):
                summary.changed = bool(logs_to_write)
                for log in logs_to_write:  # newer log state under the same trust
                    write_sealed(store.sealed_logs_dir, log)
                if logs_to_write:
                    store.share(store.sealed_logs_dir)
                return summary
            check_freshness(freshness, reject_if_stale, now, summary)
            store.commit(work)
            work = None
            for log in logs_to_write:  # after the trust that names their keys is committed
                write_sealed(store.sealed_logs_dir, log)
            if logs_to_write:
                store.share(store.sealed_logs_dir)
            state.floor = verified.metadata.floor()
            state.source = {
                "kind": "bundle",
                "path": shown_as or str(bundle.resolve()),
                "manifest_sha256": extracted.manifest_sha256,
                "created_at": extracted.manifest.created_at,
                "at": iso(now),
            }
            state.last_error = None
            state.retired_pins = list(collected.retired_pins)
            # decision 21: an Expired legacy target's window ends when this host first saw it so
            state.legacy_expired = expired_record(state.legacy_expired, collected.legacy, now)
            store.write_state(state, durable=True)  # the floor and the retired pins changed
            return summary
        finally:
            if work is not None:
                store.discard(work)
            shutil.rmtree(staging, ignore_errors=True)


def carried_log_states(
    settings: TrustRepoSettings,
    store: Store,
    staging: Path,
    verified: VerifiedTrust,
    extracted: Extracted,
    now: datetime,
) -> tuple[list[SealedLog], list[SealedLog], list[str]]:
    """Every carried log state and the ones this import writes, verified with the keys of the
    trust being imported (this host's own anchor chain) and reconciled with the held ones; any
    failure refuses the whole import with the trust unchanged."""
    carried_dir = staging / TLOG_PREFIX.rstrip("/")
    if not carried_dir.is_dir():
        return [], [], []
    view = view_of(verified, settings, None, now)
    fetched = extracted.manifest.log_fetch_times()
    try:
        carried, write, notes = accept_carried(
            carried_dir, view.sigstore.transparency_logs, store.sealed_logs_dir, fetched
        )
    except TransparencyLogError as exc:
        raise errors.VerificationError(
            f"Bundle's transparency-log state does not verify: {exc.message}",
            hint="the bundle is tampered with, or the log showed another history; nothing was changed",
        ) from exc
    return carried, write, notes


def check_freshness(
    freshness: Freshness, reject_if_stale: timedelta | None, now: datetime, summary: BundleSummary
) -> None:
    """Signed expiry only: `created_at` never decides whether a bundle is fresh."""
    expired_for = now - freshness.expires
    if reject_if_stale is not None and expired_for > reject_if_stale:
        raise StaleBundleError(
            f"Bundle refused: its signed metadata expired at {iso(freshness.expires)}, "
            f"more than {reject_if_stale} ago (--reject-if-stale)"
        )
    if freshness.state == FreshnessState.STALE:
        raise StaleBundleError(
            f"Bundle refused: it is stale (signed metadata expired at {iso(freshness.expires)}, "
            f"grace ended at {iso(freshness.stale_after)})"
        )
    if freshness.state == FreshnessState.GRACE:
        summary.warnings.append(
            f"imported trust is in grace: signed metadata expired at {iso(freshness.expires)}; "
            f"it turns stale at {iso(freshness.stale_after)}"
        )
