"""What export and import share: the bundle's TUF layout, its summary, its progress hook.

A bundle is laid out as the TUF HTTP repository python-tuf would fetch from
(`metadata/N.root.json`, `metadata/V.snapshot.json`, `targets/<hash>.<name>` with
consistent snapshots), so an exported directory is itself a `file://` repository.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib import parse

from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust.view import Freshness

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


def metadata_name(role: str, version: int, consistent: bool) -> str:
    """`metadata/V.<role>.json` with consistent snapshots (TUF spec 5.5.1), else unversioned."""
    encoded = parse.quote(role, safe="")
    return f"metadata/{version}.{encoded}.json" if consistent else f"metadata/{encoded}.json"


def target_path(name: str, info: TargetFile, consistent: bool) -> str:
    """Where python-tuf looks for a target (TUF spec 5.7.3: `<dir>/<hash>.<base>`)."""
    if not consistent:
        return f"targets/{name}"
    return f"targets/{info.get_prefixed_paths()[0]}"
