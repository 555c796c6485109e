"""The root chain from the trust anchor (TUF spec 5.3.4-5.3.5): root N+1 signed by a
threshold of root N's keys and of its own, each link remembered by content (decision 14),
each root file by its identity (decision 13's argument)."""

from __future__ import annotations

import os
from pathlib import Path

from tuf.api.metadata import Metadata, Root

from stella_trust._internal.fs import open_untrusted, read_bounded
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.tuf import proofs
from stella_trust._internal.tuf.checks import (
    MAX_REMEMBERED_ROOT,
    MAX_ROOT_CHAIN,
    MAX_ROOT_FILE,
    check_signed,
    load_role,
    unreadable,
)
from stella_trust.errors import CacheVerificationError, UnsafeFileError

Identity = tuple[int, int, int, int, int]  # FileIdentity's fields, as a plain tuple (the walk's)


def _root_file(memo: VerificationMemo, path: str, what: str) -> tuple[bytes, bytes, Identity | None] | None:
    """A root file's bytes, SHA-256 and the identity that names them (None when they were not
    remembered), or None if there is no such file.

    A root file whose identity (device, inode, size, mtime_ns, ctime_ns) this process saw
    before is not read again: any write, in place or by replacement, changes its ctime,
    which no writer can set back (the argument of decision 13). A host anchored 200 roots
    back otherwise reads and hashes 200 files on every sync and every read. Only bytes
    whose identity held still across the read are remembered; what they prove is still
    decided by their digest (proofs.py)."""
    try:
        identity = FileIdentity.of(os.stat(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise unreadable(exc, what, path) from exc
    known = memo.root_files.get(identity)
    if known is not None:
        return (*known, _plain(identity))
    try:
        with open_untrusted(path, MAX_ROOT_FILE, f"{what} ({path})") as file:
            before = FileIdentity.of(os.fstat(file.fileno()))
            data = read_bounded(file, MAX_ROOT_FILE)
            after = FileIdentity.of(os.fstat(file.fileno()))
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        raise CacheVerificationError(exc.message) from None
    except OSError as exc:
        raise unreadable(exc, what, path) from exc
    if len(data) > MAX_ROOT_FILE:
        raise CacheVerificationError(f"{what}: larger than {MAX_ROOT_FILE} bytes ({path})")
    found = (data, proofs.digest(data))
    if before == after and len(data) <= MAX_REMEMBERED_ROOT:
        memo.root_files.put(after, found)
        return (*found, _plain(after))
    return (*found, None)


def _plain(identity: FileIdentity) -> Identity:
    """The identity as the walk compares it."""
    return (identity.device, identity.inode, identity.size, identity.mtime_ns, identity.ctime_ns)


def _stat_identity(path: str, what: str) -> Identity | None:
    """The identity `_root_file` would find at `path` (None: no file there)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise unreadable(exc, what, path) from exc
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


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
    return (newest if newest is not None else load_role(chain[-1], Root, "newest root")), chain


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
    try:
        return _walk(anchor, anchor_digest, root_history, committed_roots, memo)
    except BaseException:
        # A chain from this anchor failed to verify here (an edited or missing root): no sync of
        # this process starts python-tuf from a remembered end any more, it walks (newest_start).
        memo.chain_ends.discard(anchor_digest)
        raise


def _walk(
    anchor: bytes,
    anchor_digest: bytes,
    root_history: Path,
    committed_roots: Path | None,
    memo: VerificationMemo,
) -> tuple[Metadata[Root] | None, list[bytes]]:
    """prove_root_chain's walk."""
    history = os.fspath(root_history)
    committed = None if committed_roots is None else os.fspath(committed_roots)
    chain = [anchor]
    digests = [anchor_digest]
    trusted: Metadata[Root] | None = None  # parsed chain[-1], when a check needed it
    proved: list[tuple[bytes, bytes]] = []
    if (anchor_digest, anchor_digest, anchor_digest) not in memo.root_links:
        trusted = load_role(anchor, Root, "trust anchor")
        check_signed(memo, trusted.signed, Root.type, trusted, "trust anchor")
        proved.append((anchor_digest, anchor_digest))
    version = memo.anchor_versions.get(anchor_digest)
    if version is None:
        version = (trusted or load_role(anchor, Root, "trust anchor")).signed.version
        memo.anchor_versions.put(anchor_digest, version)
    # The last walk from this anchor, in order: each root file's identity with the bytes it
    # names. While this walk meets the same identities from the first root on, each link is one
    # that walk proved (same predecessor bytes, same anchor): only the identity is compared.
    walked = memo.root_walks.get(anchor_digest) or ()
    steps: list[tuple[tuple[int, ...], bytes, bytes]] = []
    same = True
    for index in range(MAX_ROOT_CHAIN):
        version += 1
        what = f"root v{version}"
        if same and index < len(walked):
            path = f"{history}/{version}.root.json"
            identity = _stat_identity(path, what)
            if identity is None and committed is not None:
                identity = _stat_identity(f"{committed}/{version}.root.json", what)
            if identity is not None and identity == walked[index][0]:
                _, data, data_digest = walked[index]
                steps.append(walked[index])
                trusted = None  # parsed only if a later link needs it
                chain.append(data)
                digests.append(data_digest)
                continue
        same = False
        found = _root_file(memo, f"{history}/{version}.root.json", what)
        if found is None and committed is not None:
            found = _root_file(memo, f"{committed}/{version}.root.json", what)
        if found is None:
            break
        data, data_digest, identity = found
        if (anchor_digest, digests[-1], data_digest) in memo.root_links:
            trusted = None  # parsed only if a later link needs it
        else:
            if trusted is None:
                trusted = load_role(chain[-1], Root, f"root v{version - 1}")
            new = load_role(data, Root, what)
            check_signed(memo, trusted.signed, Root.type, new, f"{what} (by root v{version - 1})")
            check_signed(memo, new.signed, Root.type, new, f"{what} (by itself)")
            if new.signed.version != version:
                raise CacheVerificationError(f"{what}: file holds version {new.signed.version}")
            trusted = new
            proved.append((digests[-1], data_digest))
        if identity is not None and len(steps) == index:  # a prefix of identities naming bytes
            steps.append((identity, data, data_digest))
        chain.append(data)
        digests.append(data_digest)
    for previous, current in proved:
        memo.root_links.put((anchor_digest, previous, current), True)
    if steps and tuple(steps) != walked:
        memo.root_walks.put(anchor_digest, tuple(steps))
    return trusted, chain


def newest_start(anchor: bytes, root_history: Path, memo: VerificationMemo) -> bytes:
    """Where a sync starts python-tuf: the newest root this process proved from `anchor` that
    `root_history` holds at its version, byte for byte, with no successor file (decision 14).

    Only that root's file and its successor's name are looked at, not every root before it: the
    chain to it is a pure function of bytes this process hashed and checked. It only chooses
    python-tuf's bootstrap; every verification (reads, the commit's, export) walks every root
    file. A chain that fails any walk here forgets the remembered ends (prove_root_chain), so an
    intermediate root edited on disk, which the next read or commit refuses, sends the next sync
    through the whole walk again, and python-tuf fetches that root anew. Raises like
    prove_root_chain when nothing is remembered and the walk fails."""
    anchor_digest = proofs.digest(anchor)
    history = os.fspath(root_history)
    for version, digest, data in memo.chain_ends.get(anchor_digest) or ():
        found = _root_file(memo, f"{history}/{version}.root.json", f"root v{version}")
        if found is None or found[1] != digest:
            continue
        if _stat_identity(f"{history}/{version + 1}.root.json", f"root v{version + 1}") is None:
            return data
        break  # a successor on disk: the walk decides how far it goes
    _, chain = prove_root_chain(anchor, root_history, None, memo)
    if len(chain) > 1:
        first = memo.anchor_versions.get(anchor_digest)
        if first is not None:
            end = (first + len(chain) - 1, proofs.digest(chain[-1]), chain[-1])
            kept = [e for e in memo.chain_ends.get(anchor_digest) or () if e[0] != end[0]]
            memo.chain_ends.put(anchor_digest, tuple(sorted([end, *kept], reverse=True)[:4]))
    return chain[-1]
