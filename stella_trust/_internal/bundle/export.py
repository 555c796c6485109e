"""Export the verified cache as a bundle: a `file://` directory or a sealed `.tar.zst`.

Only what re-verified from the anchor under the lock is written (decision 2), and the
output replaces any previous one atomically. `progress` sees one stage, "write", whose
total is every byte of content written (the manifest and each file; for the sealed
format, before compression).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from stella_trust import errors
from stella_trust._internal.bundle.layout import (
    INSTANCES_PREFIX,
    MANIFEST,
    NESTED_SUFFIX,
    TLOG_PREFIX,
    ZSTD_LEVEL,
    BundleSummary,
    Entry,
    Progress,
    measure,
    metadata_name,
    sha256_file,
    target_path,
    write_archive,
)
from stella_trust._internal.bundle.manifest import FORMAT, FORMAT_VERSION, manifest_bytes
from stella_trust._internal.fs import OpenDir
from stella_trust._internal.hostpolicy import freshness as freshness_at
from stella_trust._internal.hostpolicy import view_of
from stella_trust._internal.reader import verified_current
from stella_trust._internal.redact import redact
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.sigstore.sealedlogs import SealedLog
from stella_trust._internal.store import Store
from stella_trust._internal.timefmt import iso, utcnow
from stella_trust._internal.tuf.offline import VerifiedTrust
from stella_trust._version import __version__


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
    add_bytes(metadata_name("snapshot", snapshot_version, consistent), md.raw["snapshot"])
    for role, data in md.raw.items():
        if role in ("timestamp", "snapshot"):
            continue
        meta = md.snapshot.signed.meta[f"{role}.json"]
        add_bytes(metadata_name(role, meta.version, consistent), data)
    for name, info in sorted(verified.target_info.items()):
        source = verified.generation.target_path(name)
        digest = info.hashes.get("sha256") or sha256_file(source)
        entries.append(Entry(target_path(name, info, consistent), info.length, digest, source=source))
    return entries


def _manifest(
    verified: VerifiedTrust | None,
    settings: TrustRepoSettings | None,
    entries: list[Entry],
    now: datetime,
    *,
    depth: int | None,
    compressed: bool,
    sealed_logs: list[SealedLog] | None = None,
    instances: dict[str, Any] | None = None,
) -> bytes:
    """The manifest; `verified` None for a bundle whose top level carries no trust (a host
    without the instance `default`), `instances` the named instances it carries (decision 23)."""
    sealed_logs = sealed_logs or []
    roles: dict[str, Any] = {}
    if verified is not None:
        md = verified.metadata
        roles = {
            role: {"version": md.versions[role], "expires": iso(md.expiries[role])} for role in md.versions
        }
    url = settings.tuf_url if settings is not None else None
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "created_at": iso(now),  # informational only: freshness uses signed expiry
        "source": {"tuf_url": redact(url) if url else None},  # travels
        "roles": roles,
        "depth": depth,
        # transparency-log states (`--depth`): unsigned description; import verifies the files
        "tiles": [{**log.to_json(), "prefix": f"{TLOG_PREFIX}{log.log_id}/"} for log in sealed_logs],
        "files": [{"path": e.path, "length": e.length, "sha256": e.sha256} for e in entries],
    }
    if compressed:
        document["compression"] = {"algorithm": "zstd", "level": ZSTD_LEVEL}
    if instances:
        document["instances"] = instances
    return manifest_bytes(document)


def export_directory(
    settings: TrustRepoSettings,
    store: Store,
    out: Path,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BundleSummary:
    """The bundle layout, uncompressed: also a valid `file://` TUF repository.

    OUT's parent may be a drive others prepared: it is opened once, and the export is built
    in a private staging directory made there and written relative to the descriptors held
    (fs.OpenDir: no path below the parent is resolved again), then switched in for OUT. A
    staging directory moved away or swapped for a link meanwhile is refused, never renamed
    into OUT; a link at OUT is refused, never written through."""
    now = now or utcnow()
    out = out.absolute()  # never resolved: a link at OUT is refused, not written through
    # Readers may export: no writer lock (a generation is never modified in place).
    verified = verified_current(store)
    entries = _entries(verified)
    manifest = _manifest(verified, settings, entries, now, depth=None, compressed=False)
    _write_directory(out, entries, manifest, progress)
    return _export_summary("export", out, entries, verified, settings, now)


def _write_directory(out: Path, entries: list[Entry], manifest: bytes, progress: Progress | None) -> None:
    """An exported directory at OUT: built in a private staging directory made in OUT's parent
    and written relative to the descriptors held (fs.OpenDir), then switched in for OUT."""
    try:
        with OpenDir.open(out.parent, create=True) as parent:
            _refuse_other_output(parent, out)
            staging_name = f".{out.name}.{secrets.token_hex(4)}.tmp"
            try:
                with parent.new_subdir(staging_name, 0o700) as staging:
                    total = len(manifest) + sum(e.length for e in entries)
                    with measure(progress, "write", total) as counted:
                        _write_entries(staging, entries, manifest, counted)
                    if not staging.still_at(parent, staging_name):
                        raise errors.UnsafeFileError(
                            f"refusing {out.parent}/{staging_name}: it was moved or replaced while "
                            "the export was written"
                        )
                    parent.exchange_in(staging_name, out.name)
                    if not staging.still_at(parent, out.name):  # swapped between check and rename
                        if (st := parent.lstat(out.name)) is not None and stat.S_ISLNK(st.st_mode):
                            parent.unlink(out.name)
                        raise errors.UnsafeFileError(
                            f"refusing {out}: what was renamed there is not the export written "
                            "(the staging directory was swapped)"
                        )
            except BaseException:
                parent.remove_tree(staging_name)
                raise
    except errors.UnsafeFileError as exc:
        raise errors.UsageError(
            f"refused: {exc.message.removeprefix('refusing ')}",
            hint="someone with write access to that directory is changing it: write the export "
            "where only you can write, or stop them and run the command again",
        ) from None


def _refuse_other_output(parent: OpenDir, out: Path) -> None:
    """OUT may be absent, empty, or a previous trust export; never a link or anything else."""
    st = parent.lstat(out.name)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode):
        raise errors.UsageError(f"{out} is a symbolic link; refusing to write the export through it")
    previous = False
    if stat.S_ISDIR(st.st_mode):
        with parent.subdir(out.name) as existing:
            names = existing.names()
            manifest = existing.lstat(MANIFEST) if MANIFEST in names else None
            previous = not names or (manifest is not None and stat.S_ISREG(manifest.st_mode))
    if not previous:
        raise errors.UsageError(f"{out} exists and is not a previous trust export; refusing to overwrite it")


def _write_entries(
    staging: OpenDir, entries: list[Entry], manifest: bytes, counted: Callable[[int], None] | None
) -> None:
    """Every entry and the manifest, each file created O_EXCL relative to its held directory."""
    held: dict[str, OpenDir] = {}
    try:
        for entry in entries:
            folder, _, name = entry.path.rpartition("/")
            if folder not in held:
                held[folder] = staging.descend(folder, create=True, mode=0o755)
            with entry.open() as src, held[folder].create(name, 0o644) as dst:
                _copy(src, dst, counted)
        with staging.create(MANIFEST, 0o644) as handle:
            handle.write(manifest)
        if counted is not None:
            counted(len(manifest))
    finally:
        for directory in held.values():
            directory.close()


def _copy(src: Any, dst: Any, counted: Callable[[int], None] | None) -> None:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
        if counted is not None:
            counted(len(chunk))


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
    now = now or utcnow()
    out = out.absolute()  # never resolved: the archive is renamed over a link at OUT
    # Readers may export: no writer lock (a generation is never modified in place).
    verified = verified_current(store)
    entries = _entries(verified)
    notes: list[str] = []
    sealed = _sealed_logs(settings, store, verified, depth, now, notes.append) if depth else []
    for log in sealed:
        for name, data in sorted(log.files.items()):
            entries.append(_bytes_entry(f"{TLOG_PREFIX}{log.log_id}/{name}", data))
    manifest = _manifest(verified, settings, entries, now, depth=depth, compressed=True, sealed_logs=sealed)
    total = len(manifest) + sum(e.length for e in entries)
    # OUT's parent may be a drive others prepared: the archive is created O_EXCL beside OUT
    # relative to the parent's descriptor, and renamed over OUT (a link there is replaced)
    with (
        OpenDir.open(out.parent, create=True) as parent,
        measure(progress, "write", total) as counted,
        parent.replacing(out.name, 0o644) as raw,
    ):
        write_archive(out, manifest, entries, now.timestamp(), counted, into=raw)
    summary = _export_summary("snapshot-export", out, entries, verified, settings, now)
    summary.manifest_sha256 = hashlib.sha256(manifest).hexdigest()
    summary.sealed_logs = [log.to_json() for log in sealed]
    summary.warnings.extend(notes)
    return summary


def _bytes_entry(path: str, data: bytes) -> Entry:
    return Entry(path, len(data), hashlib.sha256(data).hexdigest(), data=data)


def _sealed_logs(
    settings: TrustRepoSettings,
    store: Store,
    verified: VerifiedTrust,
    depth: int,
    now: datetime,
    note: Callable[[str], None],
) -> list[SealedLog]:
    """The verified state of every active tile log, from the trust being exported, so a host
    across the air gap can check inclusion offline (decision 15)."""
    from stella_trust._internal.bundle.tlogfetch import fetch_log_states

    view = view_of(verified, settings, store.read_state(), now)
    return fetch_log_states(settings, view, depth, now, note)


def _export_summary(
    action: str,
    out: Path,
    entries: list[Entry],
    verified: VerifiedTrust,
    settings: TrustRepoSettings,
    now: datetime,
) -> BundleSummary:
    freshness = freshness_at(verified.metadata, settings, now)
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


# ---- several instances (decision 23): the default's trust at the top, each named one nested ----
Part = tuple[str, TrustRepoSettings, Store]


def export_instances(
    parts: list[Part],
    out: Path,
    *,
    sealed: bool,
    depth: int | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BundleSummary:
    """A bundle of several instances. The instance `default`'s trust sits where a one-instance
    bundle has it (so an exported directory is still a `file://` repository for it); each named
    instance is a complete one-instance bundle of its own: `instances/<NAME>.tar.zst` in a
    sealed bundle, the directory `instances/<NAME>/` in an exported one. The manifest names
    them (`instances`); each is verified on import from the importing host's anchor for it."""
    now = now or utcnow()
    out = out.absolute()  # never resolved: a link at OUT is refused or replaced, as for one instance
    # The nested parts are built in a private directory of this user's (mkdtemp: 0700), never in
    # OUT's parent, which others may write; what reaches OUT's parent goes through fs.OpenDir.
    with tempfile.TemporaryDirectory(prefix="stella-export-") as private:
        nested = Path(private)
        carried: dict[str, Any] = {}
        summaries: dict[str, BundleSummary] = {}
        entries: list[Entry] = []
        for name, settings, store in parts:
            if name == "default":
                continue
            if sealed:
                member = f"{INSTANCES_PREFIX}{name}{NESTED_SUFFIX}"
                path = nested / f"{name}{NESTED_SUFFIX}"
                summary = export_archive(settings, store, path, depth=depth, now=now)
                entries.append(Entry(member, path.stat().st_size, sha256_file(path), source=path))
            else:
                member = f"{INSTANCES_PREFIX}{name}"
                summary = export_directory(settings, store, nested / name, now)
                entries.extend(_files_under(nested / name, member))
            summaries[name] = summary
            carried[name] = {
                "path": member,
                "source": {"tuf_url": redact(settings.tuf_url) if settings.tuf_url else None},
                "versions": summary.versions,
            }
        default = next(((s, st) for n, s, st in parts if n == "default"), None)
        verified = verified_current(default[1]) if default is not None else None
        top = _entries(verified) if verified is not None else []
        notes: list[str] = []
        logs: list[SealedLog] = []
        if sealed and depth and default is not None and verified is not None:
            logs = _sealed_logs(default[0], default[1], verified, depth, now, notes.append)
            top += [
                _bytes_entry(f"{TLOG_PREFIX}{log.log_id}/{name}", data)
                for log in logs
                for name, data in sorted(log.files.items())
            ]
        settings_top = default[0] if default is not None else None
        listed = [*top, *entries] if sealed else top  # a directory's nested parts list themselves
        manifest = _manifest(
            verified,
            settings_top,
            listed,
            now,
            depth=depth if sealed else None,
            compressed=sealed,
            sealed_logs=logs,
            instances=carried,
        )
        written = [*top, *entries]
        total = len(manifest) + sum(e.length for e in written)
        if sealed:
            with (
                OpenDir.open(out.parent, create=True) as parent,
                measure(progress, "write", total) as counted,
                parent.replacing(out.name, 0o644) as raw,
            ):
                write_archive(out, manifest, listed, now.timestamp(), counted, into=raw)
        else:
            _write_directory(out, written, manifest, progress)
    first = summaries[next(iter(summaries))] if summaries else None
    if verified is not None and default is not None:
        whole = _export_summary(
            "snapshot-export" if sealed else "export", out, listed, verified, default[0], now
        )
    else:
        assert first is not None
        whole = BundleSummary(
            "snapshot-export" if sealed else "export", str(out), len(listed), 0, {}, first.freshness
        )
    whole.files = len(listed) + sum(s.files for n, s in summaries.items() if not sealed)
    whole.bytes = sum(e.length for e in listed) + sum(s.bytes for s in summaries.values() if not sealed)
    whole.manifest_sha256 = hashlib.sha256(manifest).hexdigest() if sealed else None
    whole.sealed_logs = [log.to_json() for log in logs]
    whole.warnings.extend(notes)
    for name, summary in summaries.items():
        whole.warnings.extend(f"instance {name}: {warning}" for warning in summary.warnings)
    whole.instances = {
        **(
            {"default": {"versions": whole.versions, "freshness": whole.freshness.to_json()}}
            if default
            else {}
        ),
        **{
            n: {"versions": s.versions, "freshness": s.freshness.to_json(), "files": s.files}
            for n, s in summaries.items()
        },
    }
    return whole


def _files_under(root: Path, member: str) -> list[Entry]:
    """Every file of a nested directory export (our own private build), as entries under
    `member` in the whole export (not listed in its manifest: the nested part's own lists it)."""
    found = []
    for directory, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            found.append(Entry(f"{member}/{relative}", path.stat().st_size, sha256_file(path), source=path))
    return found
