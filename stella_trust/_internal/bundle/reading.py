"""What the two bundle readers share: how a pass reads (`ReadOptions`), what it found
(`Extracted`), and the rules every member meets whichever reader met it (decision 5).

A sealed `.tar.zst` (archive.py) and a directory `trust export` wrote (directory.py) are
read by the same rules, so the rules live once, here: the manifest's digest pins a bundle
across passes, every member is admitted against the file-count, per-file and total limits
before its bytes are read, and the wanted ones are copied (never linked) into staging.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import IO

from stella_trust._internal.bundle.layout import BundleError, Progress
from stella_trust._internal.bundle.manifest import Manifest, parse_manifest
from stella_trust._internal.settings import BundleLimits

COPY_CHUNK = 1 << 20


def _every_member(_name: str) -> bool:
    return True


def _no_lower_limit(_name: str) -> int | None:
    return None


@dataclass(frozen=True)
class ReadOptions:
    """One pass over a bundle, as its caller wants it; the same object for an archive or a
    directory, so both are asked the same question.

    `wanted`: the members written into staging (the rest are skipped, still counted).
    `member_limit`: a lower per-file limit for a name (metadata is parsed whole).
    `expect_manifest`: the sha256 an earlier pass saw, so a bundle changed between passes is
    refused. `verify_manifest` refuses the first member that is not the file listed;
    `hash_members` hashes every member without judging it (`snapshot inspect` compares).
    `stop_when_read` (a `.tar.zst` only, never with `verify_manifest`): end the pass once every
    listed, wanted member is read; the result says so (`Extracted.whole` False) and a later
    whole pass must check the archive before anything from it is committed. `progress` sees
    the stage `label` with the bundle's size, and every byte read from it."""

    limits: BundleLimits
    verify_manifest: bool
    _: KW_ONLY
    wanted: Callable[[str], bool] = _every_member
    member_limit: Callable[[str], int | None] = _no_lower_limit
    expect_manifest: str | None = None
    hash_members: bool = False
    stop_when_read: bool = False
    progress: Progress | None = None
    label: str = "read"

    @property
    def stops_early(self) -> bool:
        """A pass that checks the manifest must see every member, so it never stops early."""
        return self.stop_when_read and not self.verify_manifest

    def reads(self, name: str) -> bool:
        """Whether a member's bytes are read (written or hashed), not skipped."""
        return self.wanted(name) or self.hashes

    @property
    def hashes(self) -> bool:
        """Whether members are hashed while read: only when someone looks at the digest. An
        import judges each target by the hashes its signed metadata lists (python-tuf's
        check), so a plain extraction hashing it too would hash every byte twice."""
        return self.verify_manifest or self.hash_members

    def manifest(self, data: bytes) -> tuple[Manifest, str]:
        """The manifest a pass met, parsed once, and its digest; a bundle whose manifest
        differs from the one an earlier pass saw has changed on disk and is refused."""
        digest = hashlib.sha256(data).hexdigest()
        if self.expect_manifest is not None and digest != self.expect_manifest:
            raise BundleError("Bundle changed on disk while it was being imported")
        return parse_manifest(data, self.limits.max_files), digest


@dataclass
class Extracted:
    """What one or more passes over a bundle found, for the importer and `inspect`."""

    manifest: Manifest
    manifest_sha256: str
    files: dict[str, tuple[int, str]]  # every member read: path -> (length, sha256 or "")
    total_bytes: int
    written: set[str] = field(default_factory=set)  # the members written under dest
    # False when the pass stopped once every wanted member was read (`stop_when_read`): the
    # rest of the archive was neither read nor checked, and `files` holds only what was read.
    whole: bool = True

    def absorb(self, later: Extracted) -> None:
        """Take the figures of a later whole pass over the same archive (same manifest)."""
        if later.manifest_sha256 != self.manifest_sha256:
            raise BundleError("Bundle changed while it was being read")
        for name, found in later.files.items():
            self.files.setdefault(name, found)
        self.written |= later.written
        if later.whole:
            self.total_bytes, self.whole = later.total_bytes, True

    def check_complete(self) -> None:
        """`--verify-manifest`: a listed file the bundle does not hold is a mismatch too."""
        missing = sorted(set(self.manifest.files) - set(self.files))
        if missing:
            raise BundleError(f"Manifest mismatch: {missing[0]} is listed but not in the bundle")


class Budget:
    """The bundle-wide limits, spent member by member from the sizes the bundle declares
    (tar header, directory entry) before any byte of the member is read."""

    def __init__(self, options: ReadOptions, manifest: Manifest) -> None:
        self.options = options
        self.manifest = manifest
        self.files = 0
        self.bytes = 0

    def admit(self, name: str, size: int) -> None:
        """Take a member, or refuse the bundle: unlisted, one file too many, over its per-file
        limit, or past the total uncompressed limit."""
        limits = self.options.limits
        if name not in self.manifest.files:
            raise BundleError(f"Unsafe bundle: member {name!r} is not in the manifest")
        if self.files + 1 > limits.max_files:
            raise BundleError(f"Bundle holds more than {limits.max_files} files")
        cap = min(limits.max_file_bytes, self.options.member_limit(name) or limits.max_file_bytes)
        if size > cap:
            raise BundleError(f"Bundle member {name!r} is {size} bytes, over the {cap}-byte per-file limit")
        self.files += 1
        self.bytes += size
        if self.bytes > limits.max_uncompressed_bytes:
            raise BundleError(f"Bundle expands beyond the {limits.max_uncompressed_bytes}-byte limit")


def staging_target(dest: Path, name: str) -> Path:
    """Where a wanted member is written: below `dest`, whatever its checked name resolves to."""
    target = dest.joinpath(*name.split("/"))
    if not target.resolve().is_relative_to(dest.resolve()):
        raise BundleError(f"Unsafe bundle: member {name!r} escapes the staging directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def copy_out(
    handle: IO[bytes],
    target: Path | None,
    name: str,
    size: int,
    counted: Callable[[int], None] | None = None,
    *,
    hashed: bool = True,
) -> tuple[int, str]:
    """Hash a member while writing it to `target` (or only hash it, for --verify-manifest);
    the digest is "" when not `hashed`. A member longer than its declared size is refused as
    it grows, so the declared size the limits were checked against is the real bound."""
    digest = hashlib.sha256()
    length = 0
    with open(target, "xb") if target is not None else io.BytesIO() as out:
        while chunk := handle.read(COPY_CHUNK):
            length += len(chunk)
            if length > size:
                raise BundleError(f"Bundle member {name!r} is longer than its header says")
            if hashed:
                digest.update(chunk)
            if target is not None:
                out.write(chunk)
            if counted is not None:
                counted(len(chunk))
    return length, digest.hexdigest() if hashed else ""


def check_listed(manifest: Manifest, name: str, length: int, digest: str) -> None:
    """`--verify-manifest`: the member read must be the file the manifest lists."""
    listed = manifest.files[name]
    if not listed.matches(length, digest):
        raise BundleError(listed.mismatch(length, digest))
