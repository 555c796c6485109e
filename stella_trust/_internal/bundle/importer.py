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

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust._internal.bundle.archive import Extracted, read_bundle, sha256_file
from stella_trust._internal.bundle.layout import (
    TLOG_PREFIX,
    BundleError,
    BundleIOError,
    BundleSummary,
    Progress,
    StaleBundleError,
    measure,
    metadata_name,
    target_path,
)
from stella_trust._internal.cachestate import CacheState
from stella_trust._internal.fs import read_untrusted
from stella_trust._internal.hostpolicy import freshness as freshness_at
from stella_trust._internal.hostpolicy import trust_policy, view_of
from stella_trust._internal.policy.selection import Collected, TargetSelection, retired_pin_warning
from stella_trust._internal.settings import MetadataLimits, TrustRepoSettings
from stella_trust._internal.sigstore.sealedlogs import SealedLog, accept_carried, write_sealed
from stella_trust._internal.sigstore.tiles import MAX_ENTRY_BUNDLE_BYTES
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust._internal.store import Generation, Store
from stella_trust._internal.timefmt import iso, utcnow
from stella_trust._internal.tuf.offline import (
    MAX_METADATA_FILE,
    VerifiedMetadata,
    VerifiedTrust,
    check_target_file,
    verify_generation,
    verify_metadata,
)
from stella_trust._internal.tuf.rollback import refuse_rollback
from stella_trust.view import Freshness, FreshnessState


class _Metered(io.FileIO):
    """A file as python-tuf hashes it (`hashlib.file_digest` reads with readinto), counted."""

    def __init__(self, path: Path, counted: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self.counted = counted

    def readinto(self, buffer: Any) -> int | None:
        count = super().readinto(buffer)
        if count:
            self.counted(count)
        return count


class _BundleTargets(TargetSelection):
    """Targets from an extracted bundle: info from the verified metadata, bytes checked."""

    def __init__(
        self, md: VerifiedMetadata, staging: Path, work: Generation | None, progress: Progress | None = None
    ) -> None:
        super().__init__()
        self.md = md
        self.staging = staging
        self.work = work
        self.progress = progress
        self.consistent = bool(md.root.signed.consistent_snapshot)

    def find(self, name: str) -> TargetFile | None:
        return self.md.find_target(name)

    def names(self) -> list[str]:
        return self.md.target_names()

    def read_stored(self, path: Path) -> bytes:
        return read_untrusted(path, MAX_METADATA_FILE)

    def store(self, name: str, info: TargetFile) -> Path:
        relative = target_path(name, info, self.consistent)
        source = self.staging.joinpath(*relative.split("/"))
        if not source.is_file():
            raise BundleError(
                f"Bundle lacks target {name} ({relative})",
                hint="export the bundle from a host that pins the same targets",
            )
        reads = info.length * max(1, len(info.hashes))  # python-tuf reads once per hash algorithm
        assert self.work is not None
        path = self.work.target_path(name)
        os.link(source, path)  # staging is private to this import, under the lock
        try:
            with measure(self.progress, f"hash {name}", reads) as counted:
                # Checked where it will stay, so the commit's verification does not hash it again.
                metered = None if counted is None else (lambda p: cast(BinaryIO, _Metered(p, counted)))
                check_target_file(info, path, metered, memo=self.md.memo)
        except tuf_exceptions.LengthOrHashMismatchError as exc:
            path.unlink()
            raise errors.TargetMismatchError(f"Length or hash mismatch: bundle target {name}: {exc}") from exc
        return path


class _Plan(_BundleTargets):
    """A dry run of the host's selection over what is staged so far: it records the member
    each wanted target lives in, and stops where it needs bytes not yet extracted (the
    service map, which names further targets)."""

    def __init__(self, md: VerifiedMetadata, staging: Path) -> None:
        super().__init__(md, staging, None)
        self.missing: set[str] = set()

    def store(self, name: str, info: TargetFile) -> Path:
        relative = target_path(name, info, self.consistent)
        source = self.staging.joinpath(*relative.split("/"))
        if not source.is_file():
            self.missing.add(relative)
        return source


MAX_PASSES = 4  # metadata, the service map, what it references; one spare


def _extract_selected(
    bundle: Path,
    staging: Path,
    settings: TrustRepoSettings,
    md: VerifiedMetadata,
    first: Extracted,
    progress: Progress | None,
) -> None:
    """Extract the targets this host selects, pass by pass, until the selection needs
    nothing more from the bundle. Each pass re-reads and re-checks the whole archive
    (unselected members are skipped, still counted against the limits). If the metadata pass
    stopped early (`Extracted.whole` False) and no targets pass followed, one more pass checks
    the rest of the archive: nothing is committed from a bundle not read to its end."""
    _targets_passes(bundle, staging, settings, md, first, progress)
    _read_to_the_end(bundle, staging, settings, first, progress)


def _read_to_the_end(
    bundle: Path, staging: Path, settings: TrustRepoSettings, first: Extracted, progress: Progress | None
) -> None:
    """If no pass has read the whole archive yet, one that writes nothing checks it all
    (limits, member kinds, the end of the tar and of the zstd frame)."""
    if not first.whole:
        _whole_pass(bundle, staging, settings, first, progress, "check", lambda _name: False)


def _whole_pass(
    bundle: Path,
    staging: Path,
    settings: TrustRepoSettings,
    first: Extracted,
    progress: Progress | None,
    label: str,
    wanted: Callable[[str], bool],
) -> None:
    """One more pass over the whole archive (the one `first` came from), writing the
    `wanted` members into `staging`, with every rule and limit; its figures join `first`."""
    first.absorb(
        read_bundle(
            bundle,
            staging,
            settings.bundle_limits,
            verify_manifest=False,
            progress=progress,
            label=label,
            wanted=wanted,
            member_limit=member_limit(settings.metadata_limits),
            expect_manifest=first.manifest_sha256,
        )
    )


def _targets_passes(
    bundle: Path,
    staging: Path,
    settings: TrustRepoSettings,
    md: VerifiedMetadata,
    first: Extracted,
    progress: Progress | None,
) -> None:
    for _ in range(MAX_PASSES):
        plan = _Plan(md, staging)
        try:
            plan.collect(trust_policy(settings))
        except (errors.StellaError, OSError):
            if not plan.missing:
                return  # the real selection below fails the same way, with its own words
        listed = set(first.files) if first.whole else set(first.manifest["_by_path"])
        needed = plan.missing & listed
        if not needed:
            return  # whatever is still missing is reported by the real selection
        _whole_pass(bundle, staging, settings, first, progress, "targets", needed.__contains__)


def member_limit(limits: MetadataLimits) -> Callable[[str], int | None]:
    """A bundle carries no larger metadata than a sync would download (metadata_limits):
    every metadata file is parsed whole, so its size bounds the memory parsing takes."""

    def limit(name: str) -> int | None:
        if name.startswith(TLOG_PREFIX):  # a tile is 8 KiB, an entry bundle 256 entries
            return MAX_ENTRY_BUNDLE_BYTES
        if not name.startswith("metadata/"):
            return None
        role = name.removeprefix("metadata/").removesuffix(".json").split(".", 1)
        role_name = role[1] if len(role) == 2 and role[0].isdigit() else ".".join(role)
        return {"root": limits.root, "timestamp": limits.timestamp, "snapshot": limits.snapshot}.get(
            role_name, limits.targets
        )

    return limit


def is_metadata(name: str) -> bool:
    return name.startswith("metadata/")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
        signed = document["signed"]
        if not isinstance(signed, dict):
            raise TypeError("signed is not an object")
        return signed
    except FileNotFoundError:
        raise BundleError(f"Bundle lacks {what}") from None
    except RecursionError:
        raise errors.MalformedMetadataError(
            f"Malformed metadata in bundle: {what} nests too deeply"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.MalformedMetadataError(f"Malformed metadata in bundle: {what} ({exc})") from exc


def _stage_metadata(staging: Path, work: Generation, anchor: bytes) -> None:
    """Lay the bundle's metadata out as a cache generation (names only; verification follows)."""
    bundle_md = staging / "metadata"
    history = work.metadata_dir / "root_history"
    history.mkdir(parents=True, exist_ok=True)
    anchor_version = int(json.loads(anchor)["signed"]["version"])
    same_version = bundle_md / f"{anchor_version}.root.json"
    if same_version.is_file() and same_version.read_bytes() != anchor:
        raise errors.VerificationError(
            f"Bundle root v{anchor_version} differs from this host's trust anchor "
            f"(sha256 {sha256_file(same_version)[:16]}… vs "
            f"{hashlib.sha256(anchor).hexdigest()[:16]}…): it comes from another repository",
            hint="import only bundles exported from the repository this host trusts",
        )
    (history / f"{anchor_version}.root.json").write_bytes(anchor)
    newest, consistent = anchor_version, bool(json.loads(anchor)["signed"].get("consistent_snapshot"))
    while (bundle_md / f"{newest + 1}.root.json").is_file():
        newest += 1
        source = bundle_md / f"{newest}.root.json"
        os.link(source, history / f"{newest}.root.json")
        consistent = bool(_read_json(source, f"metadata/{newest}.root.json").get("consistent_snapshot"))
    os.symlink(os.path.join("root_history", f"{newest}.root.json"), work.metadata_dir / "root.json")

    timestamp = _read_json(bundle_md / "timestamp.json", "metadata/timestamp.json")
    os.link(bundle_md / "timestamp.json", work.metadata_dir / "timestamp.json")
    try:
        snapshot_version = int(timestamp["meta"]["snapshot.json"]["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.MalformedMetadataError("Malformed metadata in bundle: timestamp") from exc
    snapshot_name = metadata_name("snapshot", snapshot_version, consistent)
    snapshot = _read_json(staging / snapshot_name, snapshot_name)
    os.link(staging / snapshot_name, work.metadata_dir / "snapshot.json")
    meta = snapshot.get("meta") or {}
    if not isinstance(meta, dict):
        raise errors.MalformedMetadataError("Malformed metadata in bundle: snapshot meta")
    for filename, info in meta.items():
        role = filename.removesuffix(".json")
        try:
            version = int(info["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.MalformedMetadataError(f"Malformed snapshot entry {filename}") from exc
        source = staging / metadata_name(role, version, consistent)
        if source.is_file():
            os.link(source, work.metadata_dir / f"{parse.quote(role, safe='')}.json")
        elif role == "targets":
            raise BundleError(f"Bundle lacks {metadata_name(role, version, consistent)}")


def same_trust(new: VerifiedTrust, old: Generation | None, anchor: bytes) -> bool:
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
    committed_roots: Path,
    bundle: Path,
    staging: Path,
    work: Generation,
    anchor: bytes,
    first: Extracted,
    now: datetime,
    progress: Progress | None = None,
    held: HeldPins | None = None,
) -> tuple[VerifiedTrust, Collected]:
    """The one verification every bundle gets, for `import` and `snapshot inspect`: the
    metadata `first` staged, laid out as `work` and verified from `anchor`; then the targets
    this host selects, read from `bundle` into `staging`, checked and linked into `work`;
    then the whole generation re-verified and a view built from it. Rollback and freshness
    are the caller's to judge. `held`: what the host holds now, so a pin the bundle's signed
    metadata no longer lists is judged retired exactly as a sync judges it."""
    try:
        _stage_metadata(staging, work, anchor)
    except (errors.StellaError, OSError):
        _read_to_the_end(bundle, staging, settings, first, progress)  # a hostile archive says so first
        raise
    try:
        md = verify_metadata(work.metadata_dir, anchor, committed_roots)  # with a memo for this import
        _extract_selected(bundle, staging, settings, md, first, progress)
        if not first.whole:  # _extract_selected guarantees a whole pass; never commit without one
            raise BundleError("Bundle was not read to its end")
        selection = _BundleTargets(md, staging, work, progress)
        held = held or HeldPins()
        collected = selection.collect(trust_policy(settings), held.targets, held.retired)
        verified = verify_generation(work, anchor, committed_roots, memo=md.memo)  # targets checked once
    except errors.CacheVerificationError as exc:
        _read_to_the_end(bundle, staging, settings, first, progress)  # a hostile archive says so first
        raise errors.VerificationError(
            f"Bundle does not verify from this host's trust anchor: {exc.message}",
            hint="the bundle is tampered with, or from another repository; nothing was changed",
        ) from exc
    view_of(verified, settings, None, now)  # the service map must hold
    return verified, collected


@dataclass(frozen=True)
class HeldPins:
    """What a host holds before an import: the current generation's targets and the pins
    recorded as retired (policy/selection.py, `collect`)."""

    targets: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()

    @classmethod
    def of(cls, store: Store, state: CacheState) -> HeldPins:
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
) -> BundleSummary:
    """Verify `bundle` (a `.tar.zst`, or a directory `trust export` wrote) from this host's
    anchor and make it the current trust, atomically. `progress` sees each read of the
    bundle ("metadata", then "targets") and each staged target's hashing ("hash NAME")."""
    try:
        return _import(settings, store, bundle, verify_manifest, reject_if_stale, now or utcnow(), progress)
    except OSError as exc:  # a full or read-only cache filesystem: the disk's fault, not the bundle's
        where = f": {exc.filename}" if exc.filename else ""
        raise BundleIOError(f"Cannot import the bundle: {exc.strerror or exc}{where}") from exc
    except RecursionError:  # a JSON document nested past the parser's depth
        raise BundleError("Bundle holds a JSON document nested too deeply to parse") from None


def _import(
    settings: TrustRepoSettings,
    store: Store,
    bundle: Path,
    verify_manifest: bool,
    reject_if_stale: timedelta | None,
    now: datetime,
    progress: Progress | None,
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
                settings.bundle_limits,
                verify_manifest=verify_manifest,
                progress=progress,
                label="metadata",
                wanted=is_metadata_or_log_state,
                member_limit=member_limit(settings.metadata_limits),
                stop_when_read=True,  # the targets pass reads (and checks) the whole archive
            )
            base = store.current()
            work = store.begin(None)
            verified, collected = verify_staged(
                settings,
                store.committed_roots_dir,
                bundle,
                staging,
                work,
                anchor,
                extracted,
                now,
                progress,
                HeldPins.of(store, state),
            )
            refuse_rollback(base, anchor, state.floor, verified.metadata)
            retired_notes = [retired_pin_warning(pin) for pin in collected.retired_pins]
            _, logs_to_write, log_notes = carried_log_states(
                settings, store, staging, verified, extracted, now
            )
            freshness = freshness_at(verified.metadata, settings, now)
            summary = BundleSummary(  # files and bytes carried, manifest.json not counted (as export)
                "import",
                str(bundle),
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
                "path": str(bundle.resolve()),
                "manifest_sha256": extracted.manifest_sha256,
                "created_at": extracted.manifest.get("created_at"),
                "at": iso(now),
            }
            state.last_error = None
            state.retired_pins = list(collected.retired_pins)
            store.write_state(state, durable=True)  # the floor and the retired pins changed
            return summary
        finally:
            if work is not None:
                store.discard(work)
            shutil.rmtree(staging, ignore_errors=True)


def is_metadata_or_log_state(name: str) -> bool:
    """The first pass reads metadata and the sealed transparency-log states (issue 14): both
    are small, bounded, and verified before anything is committed."""
    return is_metadata(name) or name.startswith(TLOG_PREFIX)


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
    described = extracted.manifest.get("tiles")
    fetched = {
        str(entry.get("log_id")): entry.get("fetched_at")
        for entry in (described if isinstance(described, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("fetched_at"), str)
    }
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
