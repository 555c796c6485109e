"""A bundle's manifest: what the bundle says about itself, written by export and parsed
once, as hostile input, where a reader meets it (decision 5).

The bytes on disk are plain JSON (`manifest_bytes`), unchanged since format version 1, so
bundles written by earlier versions and tools that read them with `jq` keep working. What
the readers hold is a frozen `Manifest`: the file listing typed and indexed by path (the
only part anything is decided by), beside the rest of the document as read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from stella_trust._internal.bundle.layout import MANIFEST, BundleError, check_member_name

FORMAT = "stella-trust-bundle"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 16 << 20  # hard ceiling; the real bound scales with max_files
MANIFEST_BYTES_PER_FILE = 512  # an honest entry is ~250 bytes (path, length, sha256)


@dataclass(frozen=True)
class Listed:
    """One file as the manifest lists it: what a member must measure to be the one exported
    (`--verify-manifest`, `snapshot inspect`); the signed metadata, not this, judges trust."""

    path: str
    length: int
    sha256: str

    def matches(self, length: int, sha256: str) -> bool:
        """Whether a member read as (`length`, `sha256`) is the file listed."""
        return length == self.length and sha256 == self.sha256

    def mismatch(self, length: int, sha256: str) -> str:
        """The refusal for a member that is not the file listed, in the one wording import,
        the directory reader and `inspect` share."""
        return (
            f"Manifest mismatch: {self.path} has length {length} sha256 {sha256}, the manifest "
            f"says length {self.length} sha256 {self.sha256}"
        )


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. `files` maps each listed path to its entry, in the order listed;
    `described` is the rest of the document as read (format, created_at, source, roles, depth,
    tiles, compression): unsigned, informational, in the JSON's own types. Both are read-only,
    so no reader can change what a later pass compares against."""

    files: Mapping[str, Listed]
    described: Mapping[str, Any]

    @property
    def created_at(self) -> Any:
        """When the exporter says it wrote the bundle: recorded in state.json, never used to
        judge freshness (decision 3: signed expiry only)."""
        return self.described.get("created_at")

    def log_fetch_times(self) -> dict[str, str]:
        """When each carried tile-log state was fetched, by log id, as the exporter says: an
        unsigned label shown beside a state that its checkpoint signature verifies."""
        described = self.described.get("tiles")
        return {
            str(entry.get("log_id")): entry["fetched_at"]
            for entry in (described if isinstance(described, list) else [])
            if isinstance(entry, dict) and isinstance(entry.get("fetched_at"), str)
        }


def manifest_limit(max_files: int) -> int:
    """Bytes a manifest may take: proportional to the file count, so JSON parsing (which
    multiplies memory by ~10 for small values) stays bounded."""
    return min(MAX_MANIFEST_BYTES, MANIFEST_BYTES_PER_FILE * (max_files + 16))


def parse_manifest(data: bytes, max_files: int) -> Manifest:
    """The manifest, checked for shape before and after `json.loads`: a hostile manifest may
    be deep (RecursionError), dense (millions of tiny objects) or list a path that is both
    a file and a directory (`targets/a`, `targets/a/b`)."""
    if len(data) > manifest_limit(max_files):
        raise BundleError(f"Bundle manifest is implausibly large ({len(data)} bytes)")
    containers = data.count(b"{") + data.count(b"[")
    values = data.count(b",") + data.count(b":")
    if containers > max_files + 64 or values > 16 * (max_files + 64):
        raise BundleError("Bundle manifest has implausibly many values for its file limit")
    try:
        document = json.loads(data)
    except RecursionError:
        raise BundleError("Bundle manifest is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"Bundle manifest is not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError("Bundle manifest is not a stella-trust bundle manifest")
    if document.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"Bundle format version {document.get('format_version')!r} is not supported "
            f"(this tool reads version {FORMAT_VERSION})",
            hint="export the bundle with a matching stella-trust version",
        )
    files = document.pop("files", None)
    if not isinstance(files, list):
        raise BundleError("Bundle manifest has no file list")
    listed: dict[str, Listed] = {}
    directories: set[str] = set()
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise BundleError("Bundle manifest has a malformed file entry")
        path = check_member_name(item["path"])
        if path in listed or path == MANIFEST:
            raise BundleError(f"Bundle manifest lists {path!r} twice")
        length, sha256 = item.get("length"), item.get("sha256")
        if not isinstance(length, int) or isinstance(length, bool) or not isinstance(sha256, str):
            raise BundleError(f"Bundle manifest entry {path!r} lacks length or sha256")
        listed[path] = Listed(path, length, sha256)
        parts = path.split("/")
        directories.update("/".join(parts[:i]) for i in range(2, len(parts)))
    clash = next((path for path in listed if path in directories), None)
    if clash is not None:
        raise BundleError(f"Unsafe bundle: {clash!r} is listed both as a file and as a directory")
    return Manifest(MappingProxyType(listed), MappingProxyType(document))


def manifest_bytes(document: dict[str, Any]) -> bytes:
    """The manifest as written: sorted keys, two-space indent, one trailing newline, so two
    exports of the same trust at the same time are byte-identical (and hash alike)."""
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
