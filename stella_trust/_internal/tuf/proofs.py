"""What a verification proves, keyed by what was proven (TUF spec 5.3-5.7; decision 14).

Every check a host repeats is a pure function of bytes:

- a root link (TUF spec 5.3.4-5.3.5): root N+1 is trusted when a threshold of root N's keys
  and of its own signed it; expiry is not part of it (offline verification never judges
  expiry, and python-tuf checks only the final root's). Key: (anchor SHA-256, SHA-256 of root
  N, SHA-256 of root N+1). Links are pairs, never "version N is this digest": two roots a
  repository signed with the same version (a fork) must never let N+1 of one branch follow
  N of the other unchecked;
- a role's threshold signatures (5.4-5.6, 5.6.7): key (delegation digest, file digest), the
  delegation being the role, its threshold and each listed key;
- a target's length and hashes (5.7.3): key (file identity, digest of length and hashes).

`memo.VerificationMemo` remembers the keys of checks that passed, in memory only: a checkpoint
persisted next to the cache would be writable by the same user that writes the cache, and a
forged one would let that writer choose the trusted root (decision 1). What python-tuf's own
refresh verified is inferred in `_compat_tuf.py` (`UpdaterChecks`), from its fetch order.
"""

from __future__ import annotations

import hashlib
import json


def digest(data: bytes) -> bytes:
    """SHA-256 of bytes: what every remembered proof is keyed by (content, never a path or a
    version)."""
    return hashlib.sha256(data).digest()


def delegation_digest(role: str, threshold: int, keys: list[tuple[str, dict[str, object]]]) -> bytes:
    """What a signature check depends on besides the file: the role, its threshold and the
    listed keys (keyid and key value), in a stable encoding."""
    document = {"role": role, "threshold": threshold, "keys": sorted(keys, key=lambda pair: pair[0])}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).digest()
