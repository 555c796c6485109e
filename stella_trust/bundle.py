"""Air-gapped trust: export the verified cache as a bundle, import one from the host's anchor.

Export writes only what re-verified from the anchor under the lock, in the standard
TUF HTTP layout (so an exported directory is itself a `file://` repository). Import
never trusts the bundle: it is extracted by the hostile-input reader, then rebuilt
into a generation exactly like a sync — the root chain walked from this host's trust
anchor, every role and wanted target verified — then checked for rollback and
freshness (signed expiry only) and committed in one step, or nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import TargetFile

from stella_trust import __version__, errors
from stella_trust.archive import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ZSTD_LEVEL,
    BundleError,
    Entry,
    Limits,
    extract_archive,
    manifest_bytes,
    sha256_file,
    write_archive,
)
from stella_trust.selection import TargetSelection
from stella_trust.settings import TrustRepoSettings
from stella_trust.store import Generation, Store
from stella_trust.trust import GRACE, STALE, Freshness, compute_freshness, iso
from stella_trust.verify import VerifiedMetadata, VerifiedTrust, verify_generation, verify_metadata

Progress = Callable[[int], None]


class StaleBundleError(errors.StellaError):
    default_hint = "export a fresh bundle on a connected host; nothing was changed"


@dataclass
class BundleSummary:
    """What an export or import did, for humans and for `--json`."""

    action: str
    path: str
    files: int
    bytes: int
    versions: dict[str, int]
    freshness: Freshness
    changed: bool = True
    manifest_sha256: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "path": self.path,
            "files": self.files,
            "bytes": self.bytes,
            "versions": self.versions,
            "freshness": self.freshness.to_json(),
            "changed": self.changed,
            "manifest_sha256": self.manifest_sha256,
            "warnings": self.warnings,
        }


def _limits(settings: TrustRepoSettings) -> Limits:
    b = settings.bundle_limits
    return Limits(
        b.max_compressed_bytes,
        b.max_uncompressed_bytes,
        b.max_file_bytes,
        b.max_files,
        b.max_window_log,
    )


def _freshness(md: VerifiedMetadata, settings: TrustRepoSettings, now: datetime) -> Freshness:
    expiries = {**md.expiries, **md.delegated_expiries}
    return compute_freshness(expiries, timedelta(seconds=settings.freshness_threshold_seconds), now)


def _metadata_name(role: str, version: int, consistent: bool) -> str:
    encoded = parse.quote(role, safe="")
    return f"metadata/{version}.{encoded}.json" if consistent else f"metadata/{encoded}.json"


def _target_path(name: str, info: TargetFile, consistent: bool) -> str:
    """Where python-tuf looks for a target: `<dir>/<first hash>.<base>` with consistent snapshots."""
    if not consistent:
        return f"targets/{name}"
    dirname, sep, basename = name.rpartition("/")
    first_hash = next(iter(info.hashes.values()))
    return f"targets/{dirname}{sep}{first_hash}.{basename}"


# ---- export ----------------------------------------------------------------------------
def _entries(verified: VerifiedTrust) -> list[Entry]:
    md = verified.metadata
    consistent = bool(md.root.signed.consistent_snapshot)
    entries: list[Entry] = []

    def add_bytes(path: str, data: bytes) -> None:
        entries.append(Entry(path, len(data), hashlib.sha256(data).hexdigest(), data=data))

    first_root = md.root.signed.version - len(md.root_chain) + 1
    for offset, data in enumerate(md.root_chain):
        add_bytes(f"metadata/{first_root + offset}.root.json", data)
    add_bytes("metadata/timestamp.json", md.raw["timestamp"])
    snapshot_version = md.snapshot.signed.version
    add_bytes(_metadata_name("snapshot", snapshot_version, consistent), md.raw["snapshot"])
    for role, data in md.raw.items():
        if role in ("timestamp", "snapshot"):
            continue
        meta = md.snapshot.signed.meta[f"{role}.json"]
        add_bytes(_metadata_name(role, meta.version, consistent), data)
    for name, info in sorted(verified.target_info.items()):
        source = verified.generation.target_path(name)
        digest = info.hashes.get("sha256") or sha256_file(source)
        entries.append(Entry(_target_path(name, info, consistent), info.length, digest, source=source))
    return entries


def _manifest(
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    entries: list[Entry],
    now: datetime,
    *,
    depth: int | None,
    compressed: bool,
) -> bytes:
    md = verified.metadata
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "created_at": iso(now),  # informational only: freshness uses signed expiry
        "source": {"tuf_url": settings.tuf_url},
        "roles": {
            role: {"version": md.versions[role], "expires": iso(md.expiries[role])} for role in md.versions
        },
        "depth": depth,
        "tiles": None,  # transparency-log tiles (`--depth`) are not carried yet
        "files": [{"path": e.path, "length": e.length, "sha256": e.sha256} for e in entries],
    }
    if compressed:
        document["compression"] = {"algorithm": "zstd", "level": ZSTD_LEVEL}
    return manifest_bytes(document)


def _verified_current(store: Store) -> VerifiedTrust:
    current = store.current()
    if current is None:
        raise errors.CacheVerificationError(
            f"cache {store.root} holds no trust to export", hint="run `trust sync` first"
        )
    return verify_generation(current, store.read_anchor())


def export_directory(
    settings: TrustRepoSettings,
    store: Store,
    out: Path,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BundleSummary:
    """The bundle layout, uncompressed: also a valid `file://` TUF repository."""
    now = now or datetime.now(UTC)
    out = out.resolve()
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise errors.UsageError(f"{out} exists and is not a previous trust export; refusing to overwrite it")
    with store.lock(settings.lock_timeout_seconds):
        verified = _verified_current(store)
        entries = _entries(verified)
        manifest = _manifest(verified, settings, entries, now, depth=None, compressed=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            for entry in entries:
                target = staging.joinpath(*entry.path.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with entry.open() as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                if progress is not None:
                    progress(entry.length)
            (staging / MANIFEST).write_bytes(manifest)
            _replace_directory(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return _export_summary("export", out, entries, verified, settings, now)


def _replace_directory(new: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, out)


def export_archive(
    settings: TrustRepoSettings,
    store: Store,
    out: Path,
    *,
    depth: int | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BundleSummary:
    """A zstd-sealed `.tar.zst`: manifest.json first, then metadata/ and targets/."""
    now = now or datetime.now(UTC)
    out = out.resolve()
    with store.lock(settings.lock_timeout_seconds):
        verified = _verified_current(store)
        entries = _entries(verified)
        manifest = _manifest(verified, settings, entries, now, depth=depth, compressed=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write_archive(tmp, manifest, entries, now.timestamp(), progress)
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    summary = _export_summary("snapshot-export", out, entries, verified, settings, now)
    summary.manifest_sha256 = hashlib.sha256(manifest).hexdigest()
    return summary


def _export_summary(
    action: str,
    out: Path,
    entries: list[Entry],
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    now: datetime,
) -> BundleSummary:
    freshness = _freshness(verified.metadata, settings, now)
    summary = BundleSummary(
        action,
        str(out),
        len(entries),
        sum(e.length for e in entries),
        verified.metadata.versions,
        freshness,
    )
    if freshness.state != "fresh":
        summary.warnings.append(
            f"the exported trust is {freshness.state}: signed metadata expired at {iso(freshness.expires)}"
        )
    return summary


# ---- import ----------------------------------------------------------------------------
class _BundleTargets(TargetSelection):
    """Targets from an extracted bundle: info from the verified metadata, bytes checked."""

    def __init__(self, md: VerifiedMetadata, staging: Path, work: Generation) -> None:
        super().__init__()
        self.md = md
        self.staging = staging
        self.work = work
        self.consistent = bool(md.root.signed.consistent_snapshot)

    def find(self, name: str) -> TargetFile | None:
        return self.md.find_target(name)

    def names(self) -> list[str]:
        return self.md.target_names()

    def store(self, name: str, info: TargetFile) -> Path:
        relative = _target_path(name, info, self.consistent)
        source = self.staging.joinpath(*relative.split("/"))
        if not source.is_file():
            raise BundleError(
                f"Bundle lacks target {name} ({relative})",
                hint="export the bundle from a host that pins the same targets",
            )
        try:
            with source.open("rb") as handle:
                info.verify_length_and_hashes(handle)
        except tuf_exceptions.LengthOrHashMismatchError as exc:
            raise errors.TargetMismatchError(f"Length or hash mismatch: bundle target {name}: {exc}") from exc
        path = self.work.target_path(name)
        os.link(source, path)  # staging is private to this import, under the lock
        return path


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
        signed = document["signed"]
        if not isinstance(signed, dict):
            raise TypeError("signed is not an object")
        return signed
    except FileNotFoundError:
        raise BundleError(f"Bundle lacks {what}") from None
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
    snapshot_name = _metadata_name("snapshot", snapshot_version, consistent)
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
        source = staging / _metadata_name(role, version, consistent)
        if source.is_file():
            os.link(source, work.metadata_dir / f"{parse.quote(role, safe='')}.json")
        elif role == "targets":
            raise BundleError(f"Bundle lacks {_metadata_name(role, version, consistent)}")


def _same_trust(new: VerifiedTrust, old: Generation | None, anchor: bytes) -> bool:
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
    """Verify `bundle` from this host's anchor and make it the current trust, atomically."""
    from stella_trust.api import build_view
    from stella_trust.sync import refuse_rollback

    now = now or datetime.now(UTC)
    anchor = store.read_anchor()
    with store.lock(settings.lock_timeout_seconds):
        state = store.read_state()
        staging = store.scratch_dir("import")
        work: Generation | None = None
        try:
            extracted = extract_archive(
                bundle,
                staging,
                _limits(settings),
                verify_manifest=verify_manifest,
                progress=progress,
            )
            base = store.current()
            work = store.begin(None)
            _stage_metadata(staging, work, anchor)
            try:
                md = verify_metadata(work.metadata_dir, anchor)
                selection = _BundleTargets(md, staging, work)
                selection.collect(settings)
                verified = verify_generation(work, anchor)
            except errors.CacheVerificationError as exc:
                raise errors.VerificationError(
                    f"Bundle does not verify from this host's trust anchor: {exc.message}",
                    hint="the bundle is tampered with, or from another repository; nothing was changed",
                ) from exc
            build_view(verified, settings, None, now)  # the service map must hold
            refuse_rollback(base, anchor, state.floor, verified.metadata)
            freshness = _freshness(verified.metadata, settings, now)
            summary = BundleSummary(
                "import",
                str(bundle),
                len(extracted.files) + 1,
                extracted.total_bytes,
                verified.metadata.versions,
                freshness,
                manifest_sha256=extracted.manifest_sha256,
            )
            if _same_trust(verified, base, anchor):
                summary.changed = False
                return summary
            _check_freshness(freshness, reject_if_stale, now, summary)
            store.commit(work)
            work = None
            state.floor = verified.metadata.floor()
            state.source = {
                "kind": "bundle",
                "path": str(bundle.resolve()),
                "manifest_sha256": extracted.manifest_sha256,
                "created_at": extracted.manifest.get("created_at"),
                "at": iso(now),
            }
            state.last_error = None
            store.write_state(state)
            return summary
        finally:
            if work is not None:
                store.discard(work)
            shutil.rmtree(staging, ignore_errors=True)


def _check_freshness(
    freshness: Freshness, reject_if_stale: timedelta | None, now: datetime, summary: BundleSummary
) -> None:
    """Signed expiry only: `created_at` never decides whether a bundle is fresh."""
    expired_for = now - freshness.expires
    if reject_if_stale is not None and expired_for > reject_if_stale:
        raise StaleBundleError(
            f"Bundle refused: its signed metadata expired at {iso(freshness.expires)}, "
            f"more than {reject_if_stale} ago (--reject-if-stale)"
        )
    if freshness.state == STALE:
        raise StaleBundleError(
            f"Bundle refused: it is stale (signed metadata expired at {iso(freshness.expires)}, "
            f"grace ended at {iso(freshness.stale_after)})"
        )
    if freshness.state == GRACE:
        summary.warnings.append(
            f"imported trust is in grace: signed metadata expired at {iso(freshness.expires)}; "
            f"it turns stale at {iso(freshness.stale_after)}"
        )
