"""What of a bundle is read, and in how many passes: the metadata (and sealed log states)
first, then only the targets this host's selection wants, each checked by python-tuf where
it will stay; a pass that writes nothing when no other read the archive to its end (the
hostile-input rules of decision 5 are the archive reader's), and the metadata laid out as a
cache generation before it is verified from this host's anchor."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust._internal.bundle.archive import Extracted, ReadOptions, read_bundle
from stella_trust._internal.bundle.layout import (
    TLOG_PREFIX,
    BundleError,
    Progress,
    measure,
    metadata_name,
    sha256_file,
    target_path,
)
from stella_trust._internal.fs import read_untrusted
from stella_trust._internal.hostpolicy import trust_policy
from stella_trust._internal.policy.selection import TargetSelection
from stella_trust._internal.settings import MetadataLimits, TrustRepoSettings
from stella_trust._internal.sigstore.tilelayout import MAX_ENTRY_BUNDLE_BYTES
from stella_trust._internal.store import Generation
from stella_trust._internal.tuf.offline import (
    MAX_METADATA_FILE,
    VerifiedMetadata,
    check_target_file,
)


class Metered(io.FileIO):
    """A file as python-tuf hashes it (`hashlib.file_digest` reads with readinto), counted."""

    def __init__(self, path: Path, counted: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self.counted = counted

    def readinto(self, buffer: Any) -> int | None:
        """python-tuf's hashing reads here: each chunk advances the progress bar as it is hashed."""
        count = super().readinto(buffer)
        if count:
            self.counted(count)
        return count


class BundleTargets(TargetSelection):
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
        """A target's signed info, from the metadata this import verified (never the manifest)."""
        return self.md.find_target(name)

    def names(self) -> list[str]:
        """Every target name the verified metadata lists, for the host's selection."""
        return self.md.target_names()

    def read_stored(self, path: Path | str) -> bytes:
        """A staged target read for the selection (the service map), bounded like metadata."""
        return read_untrusted(path, MAX_METADATA_FILE)

    def store(self, name: str, info: TargetFile) -> Path:
        """Link the staged member into the new generation and check it there against its
        signed length and hashes, so the commit's re-verification finds it already proven."""
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
                metered = None if counted is None else (lambda p: cast(BinaryIO, Metered(p, counted)))
                check_target_file(info, path, metered, memo=self.md.memo)
        except tuf_exceptions.LengthOrHashMismatchError as exc:
            path.unlink()
            raise errors.TargetMismatchError(f"Length or hash mismatch: bundle target {name}: {exc}") from exc
        return path


class Plan(BundleTargets):
    """A dry run of the host's selection over what is staged so far: it records the member
    each wanted target lives in, and stops where it needs bytes not yet extracted (the
    service map, which names further targets)."""

    def __init__(self, md: VerifiedMetadata, staging: Path) -> None:
        super().__init__(md, staging, None)
        self.missing: set[str] = set()

    def store(self, name: str, info: TargetFile) -> Path:
        """Record the member a wanted target lives in when it is not staged yet; store nothing."""
        relative = target_path(name, info, self.consistent)
        source = self.staging.joinpath(*relative.split("/"))
        if not source.is_file():
            self.missing.add(relative)
        return source


MAX_PASSES = 4  # metadata, the service map, what it references; one spare


def extract_selected(
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
    targets_passes(bundle, staging, settings, md, first, progress)
    read_to_the_end(bundle, staging, settings, first, progress)


def read_to_the_end(
    bundle: Path, staging: Path, settings: TrustRepoSettings, first: Extracted, progress: Progress | None
) -> None:
    """If no pass has read the whole archive yet, one that writes nothing checks it all
    (limits, member kinds, the end of the tar and of the zstd frame)."""
    if not first.whole:
        whole_pass(bundle, staging, settings, first, progress, "check", lambda _name: False)


def whole_pass(
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
            ReadOptions(
                settings.bundle_limits,
                verify_manifest=False,
                progress=progress,
                label=label,
                wanted=wanted,
                member_limit=member_limit(settings.metadata_limits),
                expect_manifest=first.manifest_sha256,
            ),
        )
    )


def targets_passes(
    bundle: Path,
    staging: Path,
    settings: TrustRepoSettings,
    md: VerifiedMetadata,
    first: Extracted,
    progress: Progress | None,
) -> None:
    """Extract what the host's selection wants, pass by pass: each pass can reveal further
    wants (the service map names more targets), so passes repeat until nothing listed is
    missing, at most MAX_PASSES times."""
    for _ in range(MAX_PASSES):
        plan = Plan(md, staging)
        try:
            plan.collect(trust_policy(settings))
        except (errors.StellaError, OSError):
            if not plan.missing:
                return  # the real selection below fails the same way, with its own words
        listed = set(first.files) if first.whole else set(first.manifest.files)
        needed = plan.missing & listed
        if not needed:
            return  # whatever is still missing is reported by the real selection
        whole_pass(bundle, staging, settings, first, progress, "targets", needed.__contains__)


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
    """Whether a member is TUF metadata (read in the first pass, verified before any target)."""
    return name.startswith("metadata/")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The `signed` object of a staged metadata file, for laying out the generation; a missing
    or malformed file is the bundle's fault and refused as such (verification comes after)."""
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


def stage_metadata(staging: Path, work: Generation, anchor: bytes) -> None:
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
        consistent = bool(read_json(source, f"metadata/{newest}.root.json").get("consistent_snapshot"))
    os.symlink(os.path.join("root_history", f"{newest}.root.json"), work.metadata_dir / "root.json")

    timestamp = read_json(bundle_md / "timestamp.json", "metadata/timestamp.json")
    os.link(bundle_md / "timestamp.json", work.metadata_dir / "timestamp.json")
    try:
        snapshot_version = int(timestamp["meta"]["snapshot.json"]["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.MalformedMetadataError("Malformed metadata in bundle: timestamp") from exc
    snapshot_name = metadata_name("snapshot", snapshot_version, consistent)
    snapshot = read_json(staging / snapshot_name, snapshot_name)
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


def is_metadata_or_log_state(name: str) -> bool:
    """The first pass reads metadata and the sealed transparency-log states (decision 15): both
    are small, bounded, and verified before anything is committed."""
    return is_metadata(name) or name.startswith(TLOG_PREFIX)
