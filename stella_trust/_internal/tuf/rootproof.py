"""Root links this process already proved from an anchor, remembered by content.

TUF spec 5.3.4-5.3.5: root N+1 is trusted when it is signed by a threshold of root N's keys
and of its own. That judgement is a pure function of the two roots' bytes (expiry is not
part of it: offline verification never judges expiry, and python-tuf checks only the final
root's). So once this process has verified the chain anchor -> ... -> N, a file holding
the *same bytes* as link k (SHA-256 compared) is link k again, and re-checking its
signatures proves nothing new. The agent syncs every few minutes and attestors read per
verification; without this, a host whose repository rotated its root 200 times pays 200
root verifications (~1 ms each) on every sync and every read (issue 13).

Why in memory only (docs/design.md, decision 14): a checkpoint persisted next to the cache
would be writable by the same user that writes the cache, and a forged one would let that
writer choose the trusted root — the one thing decision 1 keeps out of its reach. A fresh
process walks the chain once from the anchor; the memo is keyed on the anchor's SHA-256, so
another anchor (or a changed pin) starts from nothing.
"""

from __future__ import annotations

import hashlib
import threading

MAX_LINKS = 100_000  # remembered links in one process (32-byte digests: a few MiB at most)

_lock = threading.Lock()
# (anchor SHA-256, SHA-256 of root N, SHA-256 of root N+1): N+1 verified against exactly N.
# Links are pairs, not "version N is this digest": two roots a repository signed with the same
# version (a fork) must never let N+1 of one branch follow N of the other unchecked.
_links: set[tuple[bytes, bytes, bytes]] = set()


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def is_proven(anchor_digest: bytes, previous: bytes, current: bytes) -> bool:
    """True if a root with digest `current` verified against one with digest `previous`,
    starting from this anchor (the anchor's own check is the link (anchor, anchor))."""
    with _lock:
        return (anchor_digest, previous, current) in _links


def remember(anchor_digest: bytes, links: list[tuple[bytes, bytes]]) -> None:
    """Record links that verified (offline.verify_root_chain calls this only after the check)."""
    with _lock:
        if len(_links) + len(links) > MAX_LINKS:
            _links.clear()
        _links.update((anchor_digest, previous, current) for previous, current in links)


def forget() -> None:
    """Drop everything (tests and benchmarks measuring a fresh process)."""
    with _lock:
        _links.clear()
        _signatures.clear()


# ---- signatures of the other roles ------------------------------------------------------------
# TUF spec 5.4-5.6: timestamp, snapshot and targets (and delegated roles, 5.6.7) are accepted
# when a threshold of the keys their delegator lists signed them. That too is a pure function
# of (the delegation: role name, threshold, each listed key) and the file's bytes. A changed
# sync where only timestamp and snapshot moved would otherwise re-encode and re-check a
# 100k-target targets.json it verified minutes ago (0.7 s of canonical JSON), and describing
# the change re-verifies the generation being replaced. Same argument as the root links:
# memory only, keyed on content, every byte still read and hashed.
_signatures: set[tuple[bytes, bytes]] = set()  # (delegation digest, file digest)


def delegation_digest(role: str, threshold: int, keys: list[tuple[str, dict[str, object]]]) -> bytes:
    """What a signature check depends on besides the file: the role, its threshold and the
    listed keys (keyid and key value), in a stable encoding."""
    import json

    document = {"role": role, "threshold": threshold, "keys": sorted(keys, key=lambda pair: pair[0])}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).digest()


def signature_proven(delegation: bytes, file_digest: bytes) -> bool:
    with _lock:
        return (delegation, file_digest) in _signatures


def remember_signature(delegation: bytes, file_digest: bytes) -> None:
    with _lock:
        if len(_signatures) >= MAX_LINKS:
            _signatures.clear()
        _signatures.add((delegation, file_digest))
