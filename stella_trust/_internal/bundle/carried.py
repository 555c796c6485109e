"""Which instances a bundle carries, and each named one's own part (decision 23).

A bundle of several instances holds the instance `default`'s trust where every bundle holds
it, and each named instance as a complete one-instance bundle of its own
(`instances/<NAME>.tar.zst`, or the directory `instances/<NAME>/` of an export); its manifest
names them (`instances`). A bundle without that key is a one-instance bundle (every bundle
written before instances existed). The manifest is unsigned: it only says where each part
is. Each part is read by the hostile reader again (decision 5) and verified from the
importing host's own anchor for that instance, so a manifest that lies gains nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from stella_trust._internal.bundle.archive import ReadOptions, read_bundle
from stella_trust._internal.bundle.extraction import is_metadata
from stella_trust._internal.bundle.importer import import_bundle
from stella_trust._internal.bundle.layout import (
    INSTANCES_PREFIX,
    NESTED_SUFFIX,
    BundleError,
    BundleSummary,
    Progress,
)
from stella_trust._internal.fs import real_directory
from stella_trust._internal.settings import (
    DEFAULT_INSTANCE,
    BundleLimits,
    TrustRepoSettings,
    is_instance_name,
)
from stella_trust._internal.store import Store
from stella_trust.errors import UnsafeFileError


@dataclass(frozen=True)
class Carried:
    """What a bundle says it carries: `named` maps each named instance to its part's path in
    the bundle; `default` whether its top level carries trust (the instance `default`'s, or a
    one-instance bundle's). `named` None: a one-instance bundle."""

    named: dict[str, str] | None
    default: bool

    def names(self) -> list[str]:
        """Every instance carried, `default` first (a one-instance bundle: just `default`)."""
        return ([DEFAULT_INSTANCE] if self.default else []) + sorted(self.named or {})


def carried_instances(bundle: Path, limits: BundleLimits) -> Carried:
    """Read the manifest only (the hostile reader's first step; nothing is written) and say
    which instances the bundle carries; a malformed `instances` entry is refused."""
    with tempfile.TemporaryDirectory(prefix="stella-manifest-") as scratch:
        options = ReadOptions(
            limits, False, wanted=lambda _name: False, stop_when_read=True, label="manifest"
        )
        manifest = read_bundle(bundle, Path(scratch), options).manifest
    default = any(path.startswith("metadata/") for path in manifest.files)
    described = manifest.described.get("instances")
    if described is None:
        return Carried(None, True)
    if not isinstance(described, dict) or not described:
        raise BundleError("Bundle manifest's instances must map instance names to their parts")
    named: dict[str, str] = {}
    for name, entry in described.items():
        if not isinstance(name, str) or not is_instance_name(name) or name == DEFAULT_INSTANCE:
            raise BundleError(f"Bundle manifest names an invalid instance {str(name)[:40]!r}")
        path = entry.get("path") if isinstance(entry, dict) else None
        expected = f"{INSTANCES_PREFIX}{name}" + ("" if bundle.is_dir() else NESTED_SUFFIX)
        if path != expected or (not bundle.is_dir() and path not in manifest.files):
            raise BundleError(f"Bundle manifest's instance {name!r} is not at {expected}")
        named[name] = expected
    return Carried(named, default)


def import_named(
    settings: TrustRepoSettings,
    store: Store,
    bundle: Path,
    name: str,
    *,
    verify_manifest: bool = False,
    reject_if_stale: timedelta | None = None,
    progress: Progress | None = None,
) -> BundleSummary:
    """Import the named instance's own part of `bundle` into its cache, verified from this
    host's anchor for it; nothing of any other instance is read into it or touched."""
    shown = f"{bundle.resolve()}#{INSTANCES_PREFIX}{name}" + ("/" if bundle.is_dir() else NESTED_SUFFIX)
    with NestedPart(bundle, name, settings.bundle_limits, verify_manifest, store.root) as part:
        return import_bundle(
            settings,
            store,
            part,
            shown_as=shown,
            verify_manifest=verify_manifest,
            reject_if_stale=reject_if_stale,
            progress=progress,
        )


class NestedPart:
    """The named instance's part as a bundle path: the directory `instances/<NAME>/` of an
    export (no link on the way: a planted link is refused), or `instances/<NAME>.tar.zst`
    copied out of a sealed bundle by the hostile reader into a private directory under
    `near` (the instance's cache: the same filesystem), removed on exit."""

    def __init__(
        self, bundle: Path, name: str, limits: BundleLimits, verify_manifest: bool, near: Path
    ) -> None:
        self.bundle, self.name, self.limits, self.verify_manifest, self.near = (
            bundle,
            name,
            limits,
            verify_manifest,
            near,
        )
        self.scratch: Path | None = None

    def __enter__(self) -> Path:
        if self.bundle.is_dir():
            parent, part = self.bundle / "instances", self.bundle / "instances" / self.name
            try:
                if not (real_directory(parent) and real_directory(part)):
                    raise BundleError(f"Bundle directory has no instances/{self.name}/")
            except UnsafeFileError as exc:
                raise BundleError(f"Unsafe bundle: {exc.message.removeprefix('refusing ')}") from None
            return part
        member = f"{INSTANCES_PREFIX}{self.name}{NESTED_SUFFIX}"
        self.near.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix=".nested-", dir=self.near))
        options = ReadOptions(
            self.limits,
            self.verify_manifest,
            wanted=lambda found: found == member,
            stop_when_read=True,
            label=f"instance {self.name}",
        )
        extracted = read_bundle(self.bundle, self.scratch, options)
        if member not in extracted.written:
            raise BundleError(f"Bundle does not hold {member}")
        return self.scratch / "instances" / f"{self.name}{NESTED_SUFFIX}"

    def __exit__(self, *exc: object) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def carried_root(bundle: Path, name: str, sha256: str, limits: BundleLimits, near: Path) -> bytes:
    """The root carried in `name`'s part (`default`: the top level) whose bytes have `sha256`:
    `import --add-instance NAME --root-sha256 HEX` anchors on it (decision 1: the digest is
    what the operator carried in, the bytes only have to match it)."""
    near.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".roots-", dir=near) as scratch:
        if name == DEFAULT_INSTANCE:
            source = bundle
            return _matching_root(source, sha256, limits, Path(scratch))
        with NestedPart(bundle, name, limits, False, Path(scratch)) as part:
            return _matching_root(part, sha256, limits, Path(scratch) / "roots")


def _matching_root(bundle: Path, sha256: str, limits: BundleLimits, scratch: Path) -> bytes:
    """The first `metadata/N.root.json` of `bundle` whose bytes have `sha256`."""
    scratch.mkdir(parents=True, exist_ok=True)

    def wanted(found: str) -> bool:
        return is_metadata(found) and found.endswith(".root.json")

    read_bundle(bundle, scratch, ReadOptions(limits, False, wanted=wanted, label="roots"))
    for path in sorted((scratch / "metadata").glob("*.root.json")):
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    raise BundleError(
        f"the bundle carries no root with SHA-256 {sha256}",
        hint="check the digest you were given for this instance's root; nothing was changed",
    )
