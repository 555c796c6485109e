"""Build, sign and publish a TUF repository in the layout clients fetch over HTTP.

Written on `tuf.api.metadata` (the stable API) rather than the experimental
`tuf.repository` helper. The repository keeps every root version it ever signed,
because clients walk them one by one; consistent snapshots are on by default so a
client never mixes files from two publications.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import parse

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Key,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write

TOP_LEVEL_ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
KEY_TYPES = ("ed25519", "ecdsa-p256", "rsa")


def signed_by(delegator: Root, role: str, md: Metadata[Any]) -> tuple[int, int]:
    """(valid signatures from the role's keys, threshold), per python-tuf's own check."""
    result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    return len(result.signed), delegator.roles[role].threshold


def generate_signer(key_type: str = "ed25519") -> CryptoSigner:
    """A new in-memory signing key of `key_type`: the one place key types are chosen."""
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    if key_type in ("ecdsa-p256", "ecdsa"):
        return CryptoSigner.generate_ecdsa()
    if key_type == "rsa":
        return CryptoSigner.generate_rsa()
    raise ValueError(f"unknown key type {key_type!r} (choose from {', '.join(KEY_TYPES)})")


@dataclass
class Expiries:
    """Lifetimes of each role when (re-)signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        """The lifetime of `role` (by its name, as the signing code knows it)."""
        value: timedelta = getattr(self, role)
        return value


def _load_delegated(metadata: Path, targets: Metadata[Targets]) -> dict[str, Metadata[Targets]]:
    """The roles `targets` delegates to (one level, as `trust repo delegate` makes them)."""
    roles = targets.signed.delegations.roles if targets.signed.delegations else None
    return {
        name: Metadata[Targets].from_file(str(metadata / f"{parse.quote(name, safe='')}.json"))
        for name in (roles or {})
        if (metadata / f"{parse.quote(name, safe='')}.json").is_file()
    }


def _expiry(now: datetime, lifetime: timedelta) -> datetime:
    return (now + lifetime).replace(microsecond=0)


@dataclass
class Repository:
    """Signed metadata, the signers at hand, and target contents; `write()` publishes."""

    path: Path
    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]
    signers: dict[str, list[Signer]]
    expiries: Expiries = field(default_factory=Expiries)
    root_history: list[bytes] = field(default_factory=list)
    target_data: dict[str, bytes] = field(default_factory=dict)
    key_type: str = "ed25519"
    delegated: dict[str, Metadata[Targets]] = field(default_factory=dict)
    # role -> (its compact serialisation when loaded, the bytes as published): an unchanged
    # role is written back byte for byte, so a re-publication never rewrites `N.role.json`
    # of a repository someone else serialised (same version must mean same bytes)
    loaded: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    # role -> the highest version the signing machine has seen (repository/ledger.py): a new
    # version is always above it, so no machine ever signs a version a client may hold
    floors: dict[str, int] = field(default_factory=dict)

    # ---- creation -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        *,
        root_keys: int = 3,
        root_threshold: int = 2,
        key_type: str = "ed25519",
        expiries: Expiries | None = None,
        consistent_snapshot: bool = True,
        now: datetime | None = None,
        signers: dict[str, list[Signer]] | None = None,
        thresholds: dict[str, int] | None = None,
        fields: dict[str, dict[str, Any]] | None = None,
    ) -> Repository:
        """A new repository (root v1, targets/snapshot/timestamp v1), written to `path`.

        `signers` (per role) are generated when not given; `thresholds` default to the
        root threshold for root and 1 for the other roles; `fields` (per role) are extra
        signed fields, such as the signing rhythm (repository/expiry.py).
        """
        if not 1 <= root_threshold <= root_keys:
            raise ValueError("root threshold must be between 1 and the number of root keys")
        now = now or datetime.now(UTC)
        expiries = expiries or Expiries()
        signers = signers or {
            Root.type: [generate_signer(key_type) for _ in range(root_keys)],
            Targets.type: [generate_signer(key_type)],
            Snapshot.type: [generate_signer(key_type)],
            Timestamp.type: [generate_signer(key_type)],
        }
        root = Root(expires=_expiry(now, expiries.root), consistent_snapshot=consistent_snapshot)
        for role, role_signers in signers.items():
            for signer in role_signers:
                root.add_key(signer.public_key, role)
        root.roles[Root.type].threshold = root_threshold
        for role, threshold in (thresholds or {}).items():
            root.roles[role].threshold = threshold
        repo = cls(
            path=Path(path),
            root=Metadata(root),
            targets=Metadata(Targets(expires=_expiry(now, expiries.targets))),
            snapshot=Metadata(Snapshot(expires=_expiry(now, expiries.snapshot))),
            timestamp=Metadata(Timestamp(expires=_expiry(now, expiries.timestamp))),
            signers=signers,
            expiries=expiries,
            key_type=key_type,
        )
        for role, md in (
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ):
            md.signed.unrecognized_fields.update((fields or {}).get(role, {}))
        repo._sign_root()
        repo.sign_role(repo.targets)
        repo._sign_snapshot_and_timestamp(now, bump=False)
        repo.write()
        return repo

    @classmethod
    def load(cls, path: Path, expiries: Expiries | None = None) -> Repository:
        """The published state of a repository directory (no signers: add those at hand)."""
        metadata = Path(path) / "metadata"
        versions = sorted(
            int(p.name.split(".", 1)[0])
            for p in metadata.glob("*.root.json")
            if p.name.split(".", 1)[0].isdigit()
        )
        if not versions or versions != list(range(1, versions[-1] + 1)):
            raise ValueError(f"{metadata}: root history is missing or has gaps: {versions}")
        history = [(metadata / f"{v}.root.json").read_bytes() for v in versions]
        raw = {
            name: (metadata / f"{name}.json").read_bytes() for name in ("targets", "snapshot", "timestamp")
        }
        targets = Metadata[Targets].from_bytes(raw["targets"])
        repo = cls(
            path=Path(path),
            root=Metadata[Root].from_bytes(history[-1]),
            targets=targets,
            snapshot=Metadata[Snapshot].from_bytes(raw["snapshot"]),
            timestamp=Metadata[Timestamp].from_bytes(raw["timestamp"]),
            signers={},
            expiries=expiries or Expiries(),
            root_history=history,
            delegated=_load_delegated(metadata, targets),
        )
        for name in repo.delegated:
            raw[name] = (metadata / f"{parse.quote(name, safe='')}.json").read_bytes()
        for name, data in raw.items():
            md = repo.role_metadata(name)
            repo.loaded[name] = (md.to_bytes(JSONSerializer(compact=True)), data)
        return repo

    def role_metadata(self, name: str) -> Metadata[Any]:
        """The metadata of a targets-like or online role by name (delegated roles
        included), so callers need not know which attribute holds it."""
        top: dict[str, Metadata[Any]] = {
            "targets": self.targets,
            "snapshot": self.snapshot,
            "timestamp": self.timestamp,
        }
        return top[name] if name in top else self.delegated[name]

    def _bytes_of(self, name: str, md: Metadata[Any], serializer: JSONSerializer) -> bytes:
        before = self.loaded.get(name)
        if before is not None and md.to_bytes(JSONSerializer(compact=True)) == before[0]:
            return before[1]
        return md.to_bytes(serializer)

    def next_version(self, role: str, current: int) -> int:
        """The version to sign `role` at: above the current one and above every one seen
        (TUF clients accept gaps in timestamp, snapshot and targets versions, never a reuse)."""
        return max(current, self.floors.get(role, 0)) + 1

    def record_root(self) -> None:
        """Make the current `root` (already signed) the newest entry of the root history."""
        data = self.root.to_bytes(JSONSerializer(compact=False))
        version = self.root.signed.version
        if len(self.root_history) >= version:
            self.root_history[version - 1] = data
        else:
            self.root_history.append(data)

    def sign_snapshot_and_timestamp(self, now: datetime | None = None) -> None:
        """New snapshot and timestamp versions over the current targets (signers at hand)."""
        self._sign_snapshot_and_timestamp(now or datetime.now(UTC), bump=True)

    # ---- targets --------------------------------------------------------------------
    def add_target(self, name: str, data: bytes, custom: dict[str, Any] | None = None) -> TargetFile:
        """Stage a target (added or replaced); call `publish()` to sign and write."""
        info = TargetFile.from_data(name, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        self.targets.signed.targets[name] = info
        self.target_data[name] = data
        return info

    def remove_target(self, name: str) -> None:
        """Drop a target from top-level targets (and its bytes from what is written)."""
        del self.targets.signed.targets[name]
        self.target_data.pop(name, None)

    def publish(self, now: datetime | None = None) -> None:
        """New targets, snapshot and timestamp versions, signed and written."""
        now = now or datetime.now(UTC)
        self.targets.signed.version = self.next_version("targets", self.targets.signed.version)
        self.targets.signed.expires = _expiry(now, self.expiries.targets)
        self.sign_role(self.targets)
        self._sign_snapshot_and_timestamp(now, bump=True)
        self.write()

    def resign_timestamp(self, now: datetime | None = None, expires: datetime | None = None) -> None:
        """The daily job: only the timestamp changes (new version, new expiry)."""
        now = now or datetime.now(UTC)
        ts = self.timestamp.signed
        ts.version = self.next_version("timestamp", ts.version)
        ts.expires = expires or _expiry(now, self.expiries.timestamp)
        self.sign_role(self.timestamp)
        self._write_timestamp()

    def add_delegated_role(
        self, name: str, paths: list[str], now: datetime | None = None, lifetime: timedelta | None = None
    ) -> None:
        """Delegate `paths` from targets to a new role with its own key (as public-good does)."""
        now = now or datetime.now(UTC)
        signer = generate_signer(self.key_type)
        targets = self.targets.signed
        if targets.delegations is None:
            targets.delegations = Delegations(keys={}, roles={})
        assert targets.delegations.roles is not None
        targets.delegations.keys[signer.public_key.keyid] = signer.public_key
        targets.delegations.roles[name] = DelegatedRole(
            name=name, keyids=[signer.public_key.keyid], threshold=1, terminating=True, paths=paths
        )
        self.signers[name] = [signer]
        self.delegated[name] = Metadata(Targets(expires=_expiry(now, lifetime or self.expiries.targets)))

    def add_delegated_target(self, role: str, name: str, data: bytes) -> None:
        """List a target in a delegated role, at a new version of that role."""
        self.delegated[role].signed.targets[name] = TargetFile.from_data(name, data, ["sha256"])
        self.delegated[role].signed.version = self.next_version(role, self.delegated[role].signed.version)
        self.target_data[name] = data

    # ---- signing --------------------------------------------------------------------
    def _sign_root(self, extra_signers: Iterable[Signer] = ()) -> None:
        self.root.signatures.clear()
        for signer in [*extra_signers, *self.signers[Root.type]]:
            self.root.sign(signer, append=True)
        self.record_root()

    def sign_role(self, md: Metadata[Any], role: str | None = None) -> None:
        """Replace `md`'s signatures with those of the signers at hand for its role."""
        role = role or next((name for name, other in self.delegated.items() if other is md), md.signed.type)
        md.signatures.clear()
        for signer in self.signers[role]:
            md.sign(signer, append=True)

    def _sign_snapshot_and_timestamp(self, now: datetime, *, bump: bool) -> None:
        self._sign_snapshot_only(now, bump=bump)
        self._sign_timestamp_only(now, bump=bump)

    def _sign_snapshot_only(self, now: datetime, *, bump: bool = True) -> None:
        """A new snapshot naming every targets role's current version (the snapshot signers
        at hand; delegated roles signed where their keys are here)."""
        snap = self.snapshot.signed
        if bump:
            snap.version = self.next_version("snapshot", snap.version)
        snap.expires = _expiry(now, self.expiries.snapshot)
        snap.meta["targets.json"] = MetaFile(version=self.targets.signed.version)
        for name, md in self.delegated.items():
            if name in self.signers:  # else signed already (a releaser's key, another machine)
                self.sign_role(md)
            snap.meta[f"{name}.json"] = MetaFile(version=md.signed.version)
        self.sign_role(self.snapshot)

    def _sign_timestamp_only(self, now: datetime, *, bump: bool = True) -> None:
        """A new timestamp naming the current snapshot by version, length and hash."""
        snapshot_bytes = self._bytes_of("snapshot", self.snapshot, JSONSerializer(compact=False))
        ts = self.timestamp.signed
        if bump:
            ts.version = self.next_version("timestamp", ts.version)
        ts.expires = _expiry(now, self.expiries.timestamp)
        ts.snapshot_meta = MetaFile(
            version=self.snapshot.signed.version,
            length=len(snapshot_bytes),
            hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()},
        )
        self.sign_role(self.timestamp)

    # ---- output ---------------------------------------------------------------------
    @property
    def metadata_dir(self) -> Path:
        """Where the metadata is served from (`metadata/`)."""
        return self.path / "metadata"

    @property
    def targets_dir(self) -> Path:
        """Where the target files are served from (`targets/`)."""
        return self.path / "targets"

    @property
    def consistent_snapshot(self) -> bool:
        """Whether versioned file names are served (TUF spec 5.7.3), as the root says."""
        return bool(self.root.signed.consistent_snapshot)

    def root_bytes(self, version: int = 1) -> bytes:
        """Root `version` exactly as published (the bytes a client pins)."""
        return self.root_history[version - 1]

    def files(self) -> list[tuple[str, bytes]]:
        """Every file a publication writes, relative to the repository directory, in the
        order that keeps clients safe: targets first, timestamp last, so a client never sees
        metadata pointing at nothing."""
        serializer = JSONSerializer(compact=False)
        out: list[tuple[str, bytes]] = []
        listed = [self.targets, *self.delegated.values()]
        for name, info in [(n, i) for md in listed for n, i in md.signed.targets.items()]:
            data = self.target_data.get(name)
            if data is None:
                continue
            # TUF spec 5.7.3: `<dir>/<hash>.<base>` for every listed hash with consistent snapshots
            for filename in info.get_prefixed_paths() if self.consistent_snapshot else [name]:
                out.append((f"targets/{filename}", data))
        for version, data in enumerate(self.root_history, start=1):
            out.append((f"metadata/{version}.root.json", data))
        out.append(("metadata/root.json", self.root_history[-1]))
        roles = [(md.signed.type, md) for md in (self.targets, self.snapshot)]
        roles[1:1] = list(self.delegated.items())
        for name, md in roles:
            data = self._bytes_of(name, md, serializer)
            if self.consistent_snapshot:
                out.append((f"metadata/{md.signed.version}.{parse.quote(name, safe='')}.json", data))
            out.append((f"metadata/{parse.quote(name, safe='')}.json", data))
        out.append(("metadata/timestamp.json", self._bytes_of("timestamp", self.timestamp, serializer)))
        return out

    def write(self) -> None:
        """Publish `files()` in their order (each file replaced atomically)."""
        for relative, data in self.files():
            atomic_write(self.path / relative, data)

    def _write_timestamp(self) -> None:
        atomic_write(
            self.metadata_dir / "timestamp.json",
            self.timestamp.to_bytes(JSONSerializer(compact=False)),
        )

    def public_keys(self, role: str) -> list[Key]:
        """The public keys of the signers at hand for `role`."""
        return [signer.public_key for signer in self.signers[role]]

    def role(self, name: str) -> Role:
        """`name`'s entry in the current root (keyids and threshold)."""
        return self.root.signed.roles[name]
