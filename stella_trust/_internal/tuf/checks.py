"""The primitive checks of offline verification (TUF spec 5.3-5.7 on tuf.api.metadata):
parse a role, count a threshold of *distinct* keys, check a role's signatures (remembered by
content in the memo, decision 14), its pinned length, hashes and version, and read a cached
file by the one rule for directories others can write (fs.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Key, Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from stella_trust._internal.fs import read_untrusted
from stella_trust._internal.memo import VerificationMemo
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

PARSE_FAILURES: tuple[type[Exception], ...] = (
    tuf_exceptions.RepositoryError,
    DeserializationError,
    ValueError,
    KeyError,
    TypeError,
)


def load_role(data: bytes, kind: type[T], what: str) -> Metadata[T]:
    """Parse one role file and insist on its type: a file of another role under this name (a
    snapshot saved as timestamp.json) is refused before any signature is checked, and every parse
    failure is the cache's (exit 3), never a traceback."""
    try:
        md = cast(Metadata[T], Metadata.from_bytes(data))
    except PARSE_FAILURES as exc:
        raise CacheVerificationError(f"{what}: malformed metadata ({exc})") from exc
    if not isinstance(md.signed, kind):
        raise CacheVerificationError(f"{what}: expected {kind.type} metadata, found {md.signed.type}")
    return md


def key_material(key: Key) -> bytes:
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


def check_distinct_keys(delegator: Root | Targets, role: str, what: str) -> None:
    """A threshold counts keys, not keyids: a role listing the same key material under two
    keyids would let one private key meet threshold 2 (python-tuf counts keyids), so such
    metadata is refused outright."""
    keyids = delegator.get_delegated_role(role).keyids
    seen: dict[bytes, str] = {}
    for keyid in keyids:
        try:
            material = key_material(delegator.get_key(keyid))
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
    distinct keys toward its threshold (`check_distinct_keys`). python-tuf accepts a root
    that breaks them (it counts keyids), so a sync can download one; such a root is never
    kept (docs/design.md, decision 16): it is refused like any other bad metadata."""
    for role in (Root.type, *TOP_LEVEL):
        check_distinct_keys(root, role, what)


def check_signed(
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
    check_distinct_keys(delegator, role, what)
    proof: tuple[bytes, bytes] | None = None
    if data is not None:
        proof = (delegation_digest(delegator, role), proofs.digest(data))
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


def delegation_digest(delegator: Root | Targets, role: str) -> bytes:
    """The delegation a signature check ran under, by content (proofs.py): a key rotation or
    threshold change gives another digest, so a remembered check never carries over."""
    delegated = delegator.get_delegated_role(role)
    keys: list[tuple[str, dict[str, object]]] = []
    for keyid in delegated.keyids:
        try:
            keys.append((keyid, delegator.get_key(keyid).to_dict()))
        except ValueError:
            keys.append((keyid, {}))  # listed without a key: it cannot sign either way
    return proofs.delegation_digest(role, delegated.threshold, keys)


def check_meta(meta: MetaFile, data: bytes, md: Metadata[Any], what: str) -> None:
    """A role file against what its parent pins (TUF spec 5.5.2 and 5.5.4 for snapshot, 5.6.2 and
    5.6.4 for targets): length and hashes when listed, and exactly the pinned version."""
    try:
        meta.verify_length_and_hashes(data)
    except tuf_exceptions.LengthOrHashMismatchError as exc:
        raise CacheVerificationError(f"{what}: length or hash mismatch ({exc})") from exc
    if md.signed.version != meta.version:
        raise CacheVerificationError(
            f"{what}: version {md.signed.version}, but its parent pins version {meta.version}"
        )


def read_cached(path: Path, what: str, limit: int = MAX_METADATA_FILE) -> bytes:
    """A cached file, through the one rule for directories others can write (fs.py): the
    cache is the service user's, and readers must not follow its links or FIFOs."""
    try:
        return read_untrusted(path, limit, f"{what} ({path})")
    except FileNotFoundError:
        raise CacheVerificationError(f"{what}: missing from the cache ({path})") from None
    except UnsafeFileError as exc:
        raise CacheVerificationError(exc.message) from None
    except OSError as exc:
        raise unreadable(exc, what, path) from exc


def unreadable(exc: OSError, what: str, path: Path | str) -> TrustUnusableError:
    """A file we may not read is a permission problem, not an edited cache: the caller
    names the readers' group (reader.py); nothing here suggests a sync."""
    if isinstance(exc, PermissionError):
        return CacheUnreadableError(f"{what} ({path}): permission denied")
    return CacheVerificationError(f"{what}: unreadable ({exc.strerror})")
