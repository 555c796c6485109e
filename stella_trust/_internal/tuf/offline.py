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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import (
    Key,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from stella_trust._internal._compat_tuf import UpdaterChecks
from stella_trust._internal.fs import open_untrusted, read_untrusted
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.store import Floor, Generation, RoleFloor
from stella_trust._internal.tuf import proofs
from stella_trust.errors import (
    CacheUnreadableError,
    CacheVerificationError,
    TrustUnusableError,
    UnsafeFileError,
)

MAX_DELEGATIONS = 32
MAX_REMEMBERED_ROOT = 1 << 20  # larger root files are read each walk, never kept in memory
TOP_LEVEL = (Timestamp.type, Snapshot.type, Targets.type)  # the roles root delegates besides itself
MAX_ROOT_CHAIN = 10_000
SMALL_TARGET = 1 << 20  # targets up to this size are kept in memory after verification
MAX_METADATA_FILE = 512 << 20  # a cached role file (a million targets is ~160 MB)
MAX_ROOT_FILE = 16 << 20
MAX_TARGET_FILE = 1 << 40  # streamed; the signed length is the real bound (checked by python-tuf)

T = TypeVar("T", Root, Timestamp, Snapshot, Targets)

_FAILURES: tuple[type[Exception], ...] = (
    tuf_exceptions.RepositoryError,
    DeserializationError,
    ValueError,
    KeyError,
    TypeError,
)


def _load(data: bytes, kind: type[T], what: str) -> Metadata[T]:
    try:
        md = cast(Metadata[T], Metadata.from_bytes(data))
    except _FAILURES as exc:
        raise CacheVerificationError(f"{what}: malformed metadata ({exc})") from exc
    if not isinstance(md.signed, kind):
        raise CacheVerificationError(f"{what}: expected {kind.type} metadata, found {md.signed.type}")
    return md


def _key_material(key: Key) -> bytes:
    """What a key *is*, independent of its keyid and encoding: DER SPKI for PEM keys, the
    raw bytes for hex keys (ed25519)."""
    public = str(key.keyval.get("public", ""))
    if "BEGIN PUBLIC KEY" in public:
        from cryptography.hazmat.primitives import serialization

        try:
            loaded = serialization.load_pem_public_key(public.encode())
        except ValueError:
            return public.encode()
        return loaded.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    try:
        return bytes.fromhex(public)
    except ValueError:
        return public.encode()


def _check_distinct_keys(delegator: Root | Targets, role: str, what: str) -> None:
    """A threshold counts keys, not keyids: a role listing the same key material under two
    keyids would let one private key meet threshold 2 (python-tuf counts keyids), so such
    metadata is refused outright."""
    keyids = delegator.get_delegated_role(role).keyids
    seen: dict[bytes, str] = {}
    for keyid in keyids:
        try:
            material = _key_material(delegator.get_key(keyid))
        except ValueError:
            continue  # a keyid without a key cannot sign; verify_delegate judges it
        if material in seen:
            raise CacheVerificationError(
                f"{what}: role {role} lists the same key twice (keyids {seen[material][:12]}… and "
                f"{keyid[:12]}…), so one private key could meet its threshold"
            )
        seen[material] = keyid


def check_root_rules(root: Root, what: str) -> None:
    """Our own rules for a root, beyond its signatures: every role it delegates counts
    distinct keys toward its threshold (`_check_distinct_keys`). python-tuf accepts a root
    that breaks them (it counts keyids), so a sync can download one; such a root is never
    kept (docs/design.md, decision 16): it is refused like any other bad metadata."""
    for role in (Root.type, *TOP_LEVEL):
        _check_distinct_keys(root, role, what)


def _check_signed(
    memo: VerificationMemo,
    delegator: Root | Targets,
    role: str,
    md: Metadata[Any],
    what: str,
    data: bytes | None = None,
    checked: Callable[[bytes], bool] | None = None,
) -> None:
    """Threshold signatures of `role` over `md` (TUF spec 5.4.2, 5.5.3, 5.6.3, 5.6.7).

    With the file's `data`, a check this process already passed for the same delegation and
    the same bytes is not repeated, nor one `checked(file digest)` says python-tuf's refresh
    made on the same bytes with the same delegator (proofs.py, decision 14). The distinct-key
    rule is ours (python-tuf counts keyids), so it is applied either way."""
    _check_distinct_keys(delegator, role, what)
    proof: tuple[bytes, bytes] | None = None
    if data is not None:
        proof = (_delegation_digest(delegator, role), proofs.digest(data))
        if proof in memo.signatures:
            return
        if checked is not None and checked(proof[1]):
            memo.signatures.put(proof, True)
            return
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except tuf_exceptions.UnsignedMetadataError as exc:
        raise CacheVerificationError(f"{what}: signature verification failed ({exc})") from exc
    if proof is not None:
        memo.signatures.put(proof, True)


def _delegation_digest(delegator: Root | Targets, role: str) -> bytes:
    delegated = delegator.get_delegated_role(role)
    keys: list[tuple[str, dict[str, object]]] = []
    for keyid in delegated.keyids:
        try:
            keys.append((keyid, delegator.get_key(keyid).to_dict()))
        except ValueError:
            keys.append((keyid, {}))  # listed without a key: it cannot sign either way
    return proofs.delegation_digest(role, delegated.threshold, keys)


def _check_meta(meta: MetaFile, data: bytes, md: Metadata[Any], what: str) -> None:
    try:
        meta.verify_length_and_hashes(data)
    except tuf_exceptions.LengthOrHashMismatchError as exc:
        raise CacheVerificationError(f"{what}: length or hash mismatch ({exc})") from exc
    if md.signed.version != meta.version:
        raise CacheVerificationError(
            f"{what}: version {md.signed.version}, but its parent pins version {meta.version}"
        )


def _read(path: Path, what: str, limit: int = MAX_METADATA_FILE) -> bytes:
    """A cached file, through the one rule for directories others can write (fs.py): the
    cache is the service user's, and readers must not follow its links or FIFOs."""
    try:
        return read_untrusted(path, limit, f"{what} ({path})")
    except FileNotFoundError:
        raise CacheVerificationError(f"{what}: missing from the cache ({path})") from None
    except UnsafeFileError as exc:
        raise CacheVerificationError(exc.message) from None
    except OSError as exc:
        raise _unreadable(exc, what, path) from exc


def _unreadable(exc: OSError, what: str, path: Path | str) -> TrustUnusableError:
    """A file we may not read is a permission problem, not an edited cache: the caller
    names the readers' group (reader.py); nothing here suggests a sync."""
    if isinstance(exc, PermissionError):
        return CacheUnreadableError(f"{what} ({path}): permission denied")
    return CacheVerificationError(f"{what}: unreadable ({exc.strerror})")


def _root_file(memo: VerificationMemo, path: str, what: str) -> tuple[bytes, bytes] | None:
    """A root file's bytes and SHA-256, or None if there is no such file.

    A root file whose identity (device, inode, size, mtime_ns, ctime_ns) this process saw
    before is not read again: any write, in place or by replacement, changes its ctime,
    which no writer can set back (the argument of decision 13). A host anchored 200 roots
    back otherwise reads and hashes 200 files on every sync and every read. Only bytes
    whose identity held still across the read are remembered; what they prove is still
    decided by their digest (proofs.py)."""
    try:
        known = memo.root_files.get(FileIdentity.of(os.stat(path)))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(exc, what, path) from exc
    if known is not None:
        return known
    try:
        with open_untrusted(path, MAX_ROOT_FILE, f"{what} ({path})") as file:
            before = FileIdentity.of(os.fstat(file.fileno()))
            data = file.read(MAX_ROOT_FILE + 1)
            after = FileIdentity.of(os.fstat(file.fileno()))
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        raise CacheVerificationError(exc.message) from None
    except OSError as exc:
        raise _unreadable(exc, what, path) from exc
    if len(data) > MAX_ROOT_FILE:
        raise CacheVerificationError(f"{what}: larger than {MAX_ROOT_FILE} bytes ({path})")
    found = (data, proofs.digest(data))
    if before == after and len(data) <= MAX_REMEMBERED_ROOT:
        memo.root_files.put(after, found)
    return found


def verify_root_chain(
    anchor: bytes,
    root_history: Path,
    committed_roots: Path | None = None,
    memo: VerificationMemo | None = None,
) -> tuple[Metadata[Root], list[bytes]]:
    """Walk N -> N+1 from the anchor through `root_history/N.root.json`, then through
    `committed_roots/N.root.json` (roots a sync committed before a later step failed).

    TUF spec 5.3.4-5.3.5: each root is signed by a threshold of its predecessor's root keys
    and of its own. A link whose two roots are byte for byte ones this process already
    verified as a link of this anchor's chain is not checked again (`memo`, decision
    14); every file's identity is checked, and a file that changed is read and hashed again.

    Returns the newest root and the bytes of every root in the chain, anchor first.
    """
    newest, chain = prove_root_chain(anchor, root_history, committed_roots, memo)
    return (newest if newest is not None else _load(chain[-1], Root, "newest root")), chain


def prove_root_chain(
    anchor: bytes,
    root_history: Path,
    committed_roots: Path | None = None,
    memo: VerificationMemo | None = None,
) -> tuple[Metadata[Root] | None, list[bytes]]:
    """verify_root_chain without parsing what it need not: the newest root is returned
    parsed only if a check parsed it (the bytes of every root, anchor first, always)."""
    memo = memo or VerificationMemo()
    anchor_digest = proofs.digest(anchor)
    history = os.fspath(root_history)
    committed = None if committed_roots is None else os.fspath(committed_roots)
    chain = [anchor]
    digests = [anchor_digest]
    trusted: Metadata[Root] | None = None  # parsed chain[-1], when a check needed it
    version: int | None = None
    proved: list[tuple[bytes, bytes]] = []
    if (anchor_digest, anchor_digest, anchor_digest) not in memo.root_links:
        trusted = _load(anchor, Root, "trust anchor")
        _check_signed(memo, trusted.signed, Root.type, trusted, "trust anchor")
        proved.append((anchor_digest, anchor_digest))
    if version is None:
        version = memo.anchor_versions.get(anchor_digest)
    if version is None:
        version = (trusted or _load(anchor, Root, "trust anchor")).signed.version
        memo.anchor_versions.put(anchor_digest, version)
    for _ in range(MAX_ROOT_CHAIN):
        version += 1
        what = f"root v{version}"
        found = _root_file(memo, f"{history}/{version}.root.json", what)
        if found is None and committed is not None:
            found = _root_file(memo, f"{committed}/{version}.root.json", what)
        if found is None:
            break
        data, data_digest = found
        if (anchor_digest, digests[-1], data_digest) in memo.root_links:
            trusted = None  # parsed only if a later link needs it
        else:
            if trusted is None:
                trusted = _load(chain[-1], Root, f"root v{version - 1}")
            new = _load(data, Root, what)
            _check_signed(memo, trusted.signed, Root.type, new, f"{what} (by root v{version - 1})")
            _check_signed(memo, new.signed, Root.type, new, f"{what} (by itself)")
            if new.signed.version != version:
                raise CacheVerificationError(f"{what}: file holds version {new.signed.version}")
            trusted = new
            proved.append((digests[-1], data_digest))
        chain.append(data)
        digests.append(data_digest)
    for previous, current in proved:
        memo.root_links.put((anchor_digest, previous, current), True)
    return trusted, chain


@dataclass
class VerifiedMetadata:
    """Top-level roles (and delegated roles on demand) that verified from the anchor."""

    metadata_dir: Path
    root: Metadata[Root]
    root_chain: list[bytes]  # every root from the anchor to the newest, verified in order
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    _delegated: dict[str, Metadata[Targets] | None] = field(default_factory=dict)
    # Expiry of each delegated role visited by a target look-up (they count for freshness).
    delegated_expiries: dict[str, datetime] = field(default_factory=dict)
    # The verified bytes of each non-root role, by role name (for bundle export).
    raw: dict[str, bytes] = field(default_factory=dict)
    # What the verification that made this remembered (delegated roles verified later use it).
    memo: VerificationMemo = field(default_factory=VerificationMemo, repr=False, compare=False)

    @property
    def versions(self) -> dict[str, int]:
        return {
            "root": self.root.signed.version,
            "timestamp": self.timestamp.signed.version,
            "snapshot": self.snapshot.signed.version,
            "targets": self.targets.signed.version,
        }

    @property
    def expiries(self) -> dict[str, datetime]:
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
        data = _read(path, f"role {role}")
        md = _load(data, Targets, f"role {role}")
        _check_signed(self.memo, parent.signed, role, md, f"role {role}", data)
        _check_meta(meta, data, md, f"role {role}")
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
    ts_data = _read(metadata_dir / "timestamp.json", "timestamp")
    timestamp = _load(ts_data, Timestamp, "timestamp")
    _check_signed(memo, root.signed, Timestamp.type, timestamp, "timestamp", ts_data, checked[Timestamp.type])

    snap_data = _read(metadata_dir / "snapshot.json", "snapshot")
    snapshot = _load(snap_data, Snapshot, "snapshot")
    _check_signed(memo, root.signed, Snapshot.type, snapshot, "snapshot", snap_data, checked[Snapshot.type])
    _check_meta(timestamp.signed.snapshot_meta, snap_data, snapshot, "snapshot")

    targets_data = _read(metadata_dir / "targets.json", "targets")
    targets = _load(targets_data, Targets, "targets")
    _check_signed(memo, root.signed, Targets.type, targets, "targets", targets_data, checked[Targets.type])
    targets_meta = snapshot.signed.meta.get("targets.json")
    if targets_meta is None:
        raise CacheVerificationError("snapshot does not list targets.json")
    _check_meta(targets_meta, targets_data, targets, "targets")
    verified = VerifiedMetadata(metadata_dir, root, root_chain, timestamp, snapshot, targets, memo=memo)
    verified.raw.update({Timestamp.type: ts_data, Snapshot.type: snap_data, Targets.type: targets_data})
    return verified


@dataclass
class VerifiedTrust:
    """A generation whose metadata and every stored target verified."""

    generation: Generation
    metadata: VerifiedMetadata
    target_info: dict[str, TargetFile]
    _contents: dict[str, bytes]

    @property
    def contents(self) -> dict[str, bytes]:
        """The verified bytes of every stored target small enough to keep in memory."""
        return self._contents

    def read_target(self, name: str) -> bytes:
        """The verified bytes of a stored target (re-checked if it was too large to keep)."""
        if name in self._contents:
            return self._contents[name]
        info = self.target_info[name]
        data = _read(self.generation.target_path(name), f"target {name}", info.length)
        try:
            info.verify_length_and_hashes(data)
        except tuf_exceptions.LengthOrHashMismatchError as exc:
            raise CacheVerificationError(f"target {name}: changed on disk ({exc})") from exc
        return data


def _open_binary(path: Path) -> BinaryIO:
    return open_untrusted(path, MAX_TARGET_FILE)


def _expected(info: TargetFile) -> bytes:
    """What a target check compares against: the length and every listed hash."""
    return proofs.digest(repr((info.length, sorted(info.hashes.items()))).encode())


def check_target_file(
    info: TargetFile,
    path: Path,
    open_file: Callable[[Path], BinaryIO] | None = None,
    memo: VerificationMemo | None = None,
) -> None:
    """TUF spec 5.7.3 on a stored file: python-tuf's `verify_length_and_hashes`, streaming
    (through `open_file`, e.g. one that counts the bytes for a progress bar).

    A file this process checked against the same length and hashes, whose identity (device,
    inode, size, mtime_ns, ctime_ns) has not changed since, is not hashed again (decision 13's
    argument; `memo`). Raises python-tuf's LengthOrHashMismatchError, or OSError."""
    expected = _expected(info)
    if memo is not None and (FileIdentity.of(os.stat(path)), expected) in memo.targets_checked:
        return
    with (open_file or _open_binary)(path) as handle:
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
                data = _read(path, f"target {name}", SMALL_TARGET)  # a longer file: mismatch below
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
