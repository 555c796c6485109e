"""Offline re-verification of stored (or bundled) metadata and targets, no network.

python-tuf's Updater cannot run offline and always judges expiry against the wall
clock, so reads of cached trust are verified here on `tuf.api.metadata`: the root
chain is walked from the trust anchor (each root signed by its predecessor's
threshold and its own), then timestamp -> snapshot -> targets -> delegated roles by
signature, version and hash, then every stored target file by length and hashes.
Expiry is deliberately *not* a verification failure here: the freshness policy
(fresh/grace/stale, docs/design.md, decision 3) is applied by the caller on the signed dates.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from stella_trust._internal.cachestate import Floor, RoleFloor
from stella_trust._internal.fs import open_untrusted
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.store import Generation
from stella_trust._internal.tuf import proofs
from stella_trust._internal.tuf.checks import (
    MAX_DELEGATIONS,
    MAX_METADATA_FILE,
    MAX_TARGET_FILE,
    SMALL_TARGET,
    TOP_LEVEL,
    check_meta,
    check_root_rules,
    check_signed,
    load_role,
    read_cached,
)
from stella_trust._internal.tuf.rootchain import prove_root_chain, verify_root_chain
from stella_trust.errors import CacheVerificationError

if TYPE_CHECKING:  # a read never runs python-tuf's client: only a sync hands its checks in
    from stella_trust._internal._compat_tuf import UpdaterChecks

__all__ = [
    "MAX_METADATA_FILE",
    "MAX_TARGET_FILE",
    "SMALL_TARGET",
    "VerifiedMetadata",
    "VerifiedTrust",
    "check_root_rules",
    "check_target_file",
    "prove_root_chain",
    "verify_generation",
    "verify_metadata",
    "verify_root_chain",
]


class VerifiedMetadata:  # a plain class, not a dataclass: built at every start-up (issue 24)
    """Top-level roles (and delegated roles on demand) that verified from the anchor."""

    def __init__(
        self,
        metadata_dir: Path,
        root: Metadata[Root],
        root_chain: list[bytes],
        timestamp: Metadata[Timestamp],
        snapshot: Metadata[Snapshot],
        targets: Metadata[Targets],
        *,
        memo: VerificationMemo | None = None,
    ) -> None:
        """Roles that verified; delegated roles are added as target look-ups visit them."""
        self.metadata_dir = metadata_dir
        self.root = root
        self.root_chain = root_chain  # every root from the anchor to the newest, verified in order
        self.timestamp = timestamp
        self.snapshot = snapshot
        self.targets = targets
        self._delegated: dict[str, Metadata[Targets] | None] = {}
        # Expiry of each delegated role visited by a target look-up (they count for freshness).
        self.delegated_expiries: dict[str, datetime] = {}
        # The verified bytes of each non-root role, by role name (for bundle export).
        self.raw: dict[str, bytes] = {}
        # What the verification that made this remembered (delegated roles verified later use it).
        self.memo = memo if memo is not None else VerificationMemo()

    @property
    def versions(self) -> dict[str, int]:
        """The top-level roles' versions (what the rollback floor and `trust status` show)."""
        return {
            "root": self.root.signed.version,
            "timestamp": self.timestamp.signed.version,
            "snapshot": self.snapshot.signed.version,
            "targets": self.targets.signed.version,
        }

    @property
    def expiries(self) -> dict[str, datetime]:
        """The top-level roles' signed expiries; freshness takes the earliest, delegated roles
        visited included (decision 3)."""
        return {
            "root": self.root.signed.expires,
            "timestamp": self.timestamp.signed.expires,
            "snapshot": self.snapshot.signed.expires,
            "targets": self.targets.signed.expires,
        }

    @property
    def delegated_roles(self) -> dict[str, tuple[int, datetime]]:
        """(version, expiry) of each delegated role a target look-up visited."""
        return {
            role: (md.signed.version, md.signed.expires)
            for role, md in self._delegated.items()
            if md is not None and role in self.delegated_expiries
        }

    def floor(self) -> Floor:
        """The rollback floor these versions set, with the keys each role had."""
        roles = self.root.signed.roles
        return {
            role: RoleFloor(version, tuple(sorted(roles[role].keyids)) if role in roles else ())
            for role, version in self.versions.items()
        }

    def delegated_role(
        self, role: str, parent: Metadata[Targets], *, strict: bool = True
    ) -> Metadata[Targets] | None:
        """A delegated role from disk, verified against its delegator.

        Strict (the default, for target look-ups): a role the walk must visit but that is
        not cached fails, as python-tuf would, because a target found in a later role could
        be the wrong one. Lenient (listing candidate names): a missing role is skipped.
        """
        if role in self._delegated:
            return self._delegated[role]
        path = self.metadata_dir / f"{parse.quote(role, safe='')}.json"
        meta = self.snapshot.signed.meta.get(f"{role}.json")
        if meta is None or not path.exists():
            if strict:
                reason = "not listed in snapshot" if meta is None else "not in the cache"
                raise CacheVerificationError(f"role {role}: {reason}")
            return None
        data = read_cached(path, f"role {role}")
        md = load_role(data, Targets, f"role {role}")
        check_signed(self.memo, parent.signed, role, md, f"role {role}", data)
        check_meta(meta, data, md, f"role {role}")
        self._delegated[role] = md
        self.raw[role] = data
        return md

    def walk_roles(self, target_path: str | None = None) -> Iterator[tuple[str, Metadata[Targets]]]:
        """Pre-order depth-first walk like python-tuf's; all cached roles when no path is given.

        Every role the walk visits for a path counts for freshness: python-tuf would refuse
        the look-up online if any of them had expired.
        """
        to_visit: list[tuple[str, Metadata[Targets] | None]] = [(Targets.type, None)]
        visited: set[str] = set()
        while to_visit and len(visited) <= MAX_DELEGATIONS:
            role, parent = to_visit.pop()
            if role in visited:
                continue
            md = (
                self.targets
                if parent is None
                else self.delegated_role(role, parent, strict=target_path is not None)
            )
            if md is None:
                continue
            visited.add(role)
            yield role, md
            delegations = md.signed.delegations
            if delegations is None or delegations.roles is None:
                continue
            children: list[tuple[str, Metadata[Targets] | None]] = []
            if target_path is None:
                children = [(name, md) for name in delegations.roles]
            else:
                for name, terminating in delegations.get_roles_for_target(target_path):
                    children.append((name, md))
                    if terminating:
                        to_visit = []
                        break
            children.reverse()
            to_visit.extend(children)

    def find_target(self, name: str) -> TargetFile | None:
        """The target info the delegation walk finds (TUF spec 5.6.7), noting the expiry of every
        delegated role visited: they count for freshness."""
        for role, md in self.walk_roles(name):
            if role != Targets.type:
                self.delegated_expiries[role] = md.signed.expires
            info = md.signed.targets.get(name)
            if info is not None:
                return info
        return None

    def target_names(self) -> list[str]:
        """Every target name listed by the top-level role and the delegated roles we hold."""
        names: dict[str, None] = {}
        for _role, md in self.walk_roles():
            names.update(dict.fromkeys(md.signed.targets))
        return list(names)


def verify_metadata(
    metadata_dir: Path,
    anchor: bytes,
    committed_roots: Path | None = None,
    updater_checks: UpdaterChecks | None = None,
    memo: VerificationMemo | None = None,
) -> VerifiedMetadata:
    """Verify the top-level metadata in `metadata_dir` from the anchor (expiry not judged).

    `updater_checks` (a sync's working copy only): the files python-tuf's refresh just verified
    and the root it verified them with; a file with exactly those bytes, under a newest root
    with exactly those bytes, needs no second signature check (decision 14)."""
    memo = memo or VerificationMemo()
    root, root_chain = verify_root_chain(anchor, metadata_dir / "root_history", committed_roots, memo)
    checked: dict[str, Callable[[bytes], bool] | None] = dict.fromkeys(TOP_LEVEL, None)
    if updater_checks is not None:
        root_digest = proofs.digest(root_chain[-1])
        for role in TOP_LEVEL:
            checked[role] = functools.partial(updater_checks.covers, root_digest, role)
    ts_data = read_cached(metadata_dir / "timestamp.json", "timestamp")
    timestamp = load_role(ts_data, Timestamp, "timestamp")
    check_signed(memo, root.signed, Timestamp.type, timestamp, "timestamp", ts_data, checked[Timestamp.type])

    snap_data = read_cached(metadata_dir / "snapshot.json", "snapshot")
    snapshot = load_role(snap_data, Snapshot, "snapshot")
    check_signed(memo, root.signed, Snapshot.type, snapshot, "snapshot", snap_data, checked[Snapshot.type])
    check_meta(timestamp.signed.snapshot_meta, snap_data, snapshot, "snapshot")

    targets_data = read_cached(metadata_dir / "targets.json", "targets")
    targets = load_role(targets_data, Targets, "targets")
    check_signed(memo, root.signed, Targets.type, targets, "targets", targets_data, checked[Targets.type])
    targets_meta = snapshot.signed.meta.get("targets.json")
    if targets_meta is None:
        raise CacheVerificationError("snapshot does not list targets.json")
    check_meta(targets_meta, targets_data, targets, "targets")
    verified = VerifiedMetadata(metadata_dir, root, root_chain, timestamp, snapshot, targets, memo=memo)
    verified.raw.update({Timestamp.type: ts_data, Snapshot.type: snap_data, Targets.type: targets_data})
    return verified


class VerifiedTrust:  # a plain class, not a dataclass: built at every start-up (issue 24)
    """A generation whose metadata and every stored target verified."""

    def __init__(
        self,
        generation: Generation,
        metadata: VerifiedMetadata,
        target_info: dict[str, TargetFile],
        contents: dict[str, bytes],
    ) -> None:
        """What verified; targets too large to keep in memory are re-checked when read."""
        self.generation = generation
        self.metadata = metadata
        self.target_info = target_info
        self._contents = contents

    @property
    def contents(self) -> dict[str, bytes]:
        """The verified bytes of every stored target small enough to keep in memory."""
        return self._contents

    def read_target(self, name: str) -> bytes:
        """The verified bytes of a stored target (re-checked if it was too large to keep)."""
        if name in self._contents:
            return self._contents[name]
        info = self.target_info[name]
        data = read_cached(self.generation.target_path(name), f"target {name}", info.length)
        try:
            info.verify_length_and_hashes(data)
        except tuf_exceptions.LengthOrHashMismatchError as exc:
            raise CacheVerificationError(f"target {name}: changed on disk ({exc})") from exc
        return data


def _open_binary(path: Path | str) -> BinaryIO:
    """A stored target opened by fs.py's rule (decision 18); its signed length is the real bound."""
    return open_untrusted(path, MAX_TARGET_FILE)


def _expected(info: TargetFile) -> bytes:
    """What a target check compares against: the length and every listed hash."""
    return proofs.digest(repr((info.length, sorted(info.hashes.items()))).encode())


def _identity(path: Path | str) -> FileIdentity:
    """A stored file's identity, never through a link."""
    return FileIdentity.of(os.stat(path, follow_symlinks=False))


def check_target_file(
    info: TargetFile,
    path: Path | str,
    open_file: Callable[[Path], BinaryIO] | None = None,
    memo: VerificationMemo | None = None,
) -> None:
    """TUF spec 5.7.3 on a stored file: python-tuf's `verify_length_and_hashes`, streaming
    (through `open_file`, e.g. one that counts the bytes for a progress bar).

    A file this process checked against the same length and hashes, whose identity (device,
    inode, size, mtime_ns, ctime_ns) has not changed since, is not hashed again (decision 13's
    argument; `memo`; the name is never followed: a link has its own identity, and the open
    below refuses it). Raises python-tuf's LengthOrHashMismatchError, or OSError."""
    expected = _expected(info)
    if memo is not None and (_identity(path), expected) in memo.targets_checked:
        return
    with open_file(Path(path)) if open_file is not None else _open_binary(path) as handle:
        before = FileIdentity.of(os.fstat(handle.fileno()))
        info.verify_length_and_hashes(handle)
        after = FileIdentity.of(os.fstat(handle.fileno()))
    if before == after and memo is not None:
        memo.targets_checked.put((after, expected), True)


def verify_generation(
    generation: Generation,
    anchor: bytes,
    committed_roots: Path | None = None,
    updater_checks: UpdaterChecks | None = None,
    memo: VerificationMemo | None = None,
) -> VerifiedTrust:
    """Everything a reader may be served: metadata from the anchor, then each stored target."""
    memo = memo or VerificationMemo()
    metadata = verify_metadata(generation.metadata_dir, anchor, committed_roots, updater_checks, memo)
    infos: dict[str, TargetFile] = {}
    contents: dict[str, bytes] = {}
    for name in generation.stored_target_names():
        info = metadata.find_target(name)
        if info is None:
            raise CacheVerificationError(f"target {name}: stored but not listed in signed metadata")
        path = generation.target_path(name)
        try:
            if info.length <= SMALL_TARGET:
                data = read_cached(path, f"target {name}", SMALL_TARGET)  # a longer file: mismatch below
                info.verify_length_and_hashes(data)
                contents[name] = data
            else:
                try:
                    check_target_file(info, path, memo=memo)
                except OSError as exc:
                    raise CacheVerificationError(f"target {name}: unreadable ({exc})") from exc
        except tuf_exceptions.LengthOrHashMismatchError as exc:
            raise CacheVerificationError(f"target {name}: length or hash mismatch ({exc})") from exc
        infos[name] = info
    return VerifiedTrust(generation, metadata, infos, contents)
