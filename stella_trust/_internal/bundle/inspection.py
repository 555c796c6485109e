"""`trust snapshot inspect`: what a bundle holds, read as hostile input, nothing imported.

The bundle (a `.tar.zst` or a directory `trust export` wrote) is read by the same reader as
an import, with the same limits (decision 5), into a private temporary directory outside
the cache, which is removed afterwards: every member is hashed and compared with the
manifest. When this host is initialised, the bundle is then verified exactly as `import`
would (`importer.verify_staged`, from this host's anchor, rollback and freshness judged),
still in the temporary directory: the cache is only read, never written, and no lock is
taken.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from stella_trust import errors
from stella_trust._internal.bundle.archive import Extracted, ReadOptions, read_bundle
from stella_trust._internal.bundle.extraction import is_metadata_or_log_state, member_limit
from stella_trust._internal.bundle.importer import (
    carried_log_states,
    check_freshness,
    same_trust,
    verify_staged,
)
from stella_trust._internal.bundle.layout import BundleError, BundleSummary, Progress
from stella_trust._internal.hostpolicy import freshness as freshness_at
from stella_trust._internal.settings import BundleLimits, TrustRepoSettings
from stella_trust._internal.store import Generation, Store
from stella_trust._internal.timefmt import utcnow
from stella_trust.view import Freshness

# What the manifest says about itself, passed through as read (types are the JSON's own).
MANIFEST_FIELDS = (
    "format",
    "format_version",
    "tool_version",
    "created_at",
    "source",
    "roles",
    "depth",
    "tiles",
)


@dataclass(frozen=True)
class FileCheck:
    """One file the manifest lists, against what the bundle holds: `ok`, `missing`, or
    `mismatch` with what the member really held (`found`: length and SHA-256)."""

    path: str
    length: int
    sha256: str
    state: Literal["ok", "mismatch", "missing"]
    found: tuple[int, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as `--json` shows it (`found_length`/`found_sha256` on a mismatch only)."""
        entry: dict[str, Any] = {"path": self.path, "length": self.length, "sha256": self.sha256}
        entry["state"] = self.state
        if self.found is not None:
            entry |= {"found_length": self.found[0], "found_sha256": self.found[1]}
        return entry


@dataclass
class Verification:
    """Whether the bundle would import on this host: `verified` (it would; `changed` says
    whether it differs from the trust held), `refused` (with the reason import would give),
    or `skipped` (this host is not initialised, or the bundle does not match its manifest)."""

    status: str
    message: str | None = None
    error: errors.StellaError | None = None
    versions: dict[str, int] | None = None
    freshness: Freshness | None = None
    changed: bool | None = None
    warnings: list[str] = field(default_factory=list)
    sealed_logs: list[dict[str, Any]] = field(default_factory=list)  # verified (decision 15)

    def to_json(self) -> dict[str, Any]:
        """The verdict as `--json` shows it (the error object stays out: its message is here)."""
        return {
            "status": self.status,
            "message": self.message,
            "versions": self.versions,
            "freshness": self.freshness.to_json() if self.freshness is not None else None,
            "changed": self.changed,
            "sealed_logs": self.sealed_logs,
        }


@dataclass
class Inspection:
    """What `snapshot inspect` found: the bundle as read, each listed file against what it
    holds, and whether it would import on this host."""

    path: str
    kind: str  # "archive" or "directory"
    bytes: int  # the archive's size, or the directory's files
    manifest_sha256: str
    manifest: dict[str, Any]
    files: list[FileCheck]  # each listed file against what the bundle holds
    problems: list[str]  # manifest mismatches, in import's words
    verification: Verification

    @property
    def intact(self) -> bool:
        """True when every listed file is in the bundle as listed: what an import checks too."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The inspection as `--json` shows it (`jq .result.manifest` reads the manifest)."""
        return {
            "path": self.path,
            "kind": self.kind,
            "bytes": self.bytes,
            "manifest_sha256": self.manifest_sha256,
            "manifest": self.manifest,
            "files": [checked.to_json() for checked in self.files],
            "intact": self.intact,
            "problems": self.problems,
            "verification": self.verification.to_json(),
        }


def inspect_bundle(
    bundle: Path,
    limits: BundleLimits,
    *,
    host: tuple[TrustRepoSettings, Store] | None = None,
    skipped: str = "verification not requested",
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Inspection:
    """Read and check `bundle`; with `host` (this host's settings and cache), also say
    whether it would import there. `skipped` is the reason given when `host` is None."""
    now = now or utcnow()
    scratch = Path(tempfile.mkdtemp(prefix="stella-trust-inspect-"))
    try:
        staging = scratch / "staging"
        staging.mkdir()
        options = ReadOptions(
            limits,
            verify_manifest=False,
            hash_members=True,
            progress=progress,
            label="read",
            wanted=is_metadata_or_log_state if host is not None else (lambda _name: False),
        )
        if host is not None:
            options = replace(options, member_limit=member_limit(host[0].metadata_limits))
        extracted = read_bundle(bundle, staging, options)
        files, problems = _compare(extracted)
        if problems:
            verification = Verification("skipped", "the bundle does not match its manifest")
        elif host is None:
            verification = Verification("skipped", skipped)
        else:
            verification = _would_import(host, bundle, staging, scratch / "work", extracted, now, progress)
        return Inspection(
            path=str(bundle),
            kind="directory" if bundle.is_dir() else "archive",
            bytes=extracted.total_bytes if bundle.is_dir() else bundle.stat().st_size,
            manifest_sha256=extracted.manifest_sha256,
            manifest=_manifest_view(extracted),
            files=files,
            problems=problems,
            verification=verification,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _manifest_view(extracted: Extracted) -> dict[str, Any]:
    """The manifest as `--json` shows it: the fields it says about itself, as read, and
    the file listing (what the checks compared against)."""
    described = extracted.manifest.described
    view = {key: described.get(key) for key in MANIFEST_FIELDS}
    if "compression" in described:
        view["compression"] = described["compression"]
    view["files"] = [
        {"path": listed.path, "length": listed.length, "sha256": listed.sha256}
        for listed in extracted.manifest.files.values()
    ]
    return view


def _compare(extracted: Extracted) -> tuple[list[FileCheck], list[str]]:
    """Each listed file against what the bundle holds (the reader already refused members
    the manifest does not list)."""
    files: list[FileCheck] = []
    problems: list[str] = []
    for path, listed in extracted.manifest.files.items():
        found = extracted.files.get(path)
        if found is None:
            files.append(FileCheck(path, listed.length, listed.sha256, "missing"))
            problems.append(f"Manifest mismatch: {path} is listed but not in the bundle")
        elif not listed.matches(*found):
            files.append(FileCheck(path, listed.length, listed.sha256, "mismatch", found))
            problems.append(listed.mismatch(*found))
        else:
            files.append(FileCheck(path, listed.length, listed.sha256, "ok"))
    return files, problems


def _would_import(
    host: tuple[TrustRepoSettings, Store],
    bundle: Path,
    staging: Path,
    work_path: Path,
    extracted: Extracted,
    now: datetime,
    progress: Progress | None,
) -> Verification:
    """Import's own checks, in `work_path` (a temporary directory): nothing is committed."""
    settings, store = host
    try:
        anchor = store.read_anchor()
    except errors.NotInitialisedError as exc:
        return Verification("skipped", f"this host is not initialised ({exc.message})")
    except errors.StellaError as exc:
        return Verification("refused", exc.message, error=exc)
    work = Generation(work_path)
    work.metadata_dir.mkdir(parents=True)
    work.targets_dir.mkdir()
    try:
        state = store.read_state()
        verified, _ = verify_staged(
            settings, store, state, bundle, staging, work, anchor, extracted, now, progress
        )
        base = store.current()
        freshness = freshness_at(verified.metadata, settings, now)
        summary = BundleSummary("inspect", str(bundle), 0, 0, verified.metadata.versions, freshness)
        check_freshness(freshness, None, now, summary)
        carried, _, log_notes = carried_log_states(settings, store, staging, verified, extracted, now)
        summary.warnings.extend(log_notes)
    except errors.StellaError as exc:
        return Verification("refused", exc.message, error=exc)
    except RecursionError:
        error = BundleError("Bundle holds a JSON document nested too deeply to parse")
        return Verification("refused", error.message, error=error)
    return Verification(
        "verified",
        versions=verified.metadata.versions,
        freshness=freshness,
        changed=not same_trust(verified, base, anchor),
        warnings=summary.warnings,
        sealed_logs=[log.to_json(now) for log in carried],
    )


__all__ = ["FileCheck", "Inspection", "Verification", "inspect_bundle"]
