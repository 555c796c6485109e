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
forged one would let that writer choose the trusted root (decision 1). This module also reads
what python-tuf's own refresh verified (`UpdaterChecks`), so the check before a commit does not
make the same library call on the same two inputs again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def delegation_digest(role: str, threshold: int, keys: list[tuple[str, dict[str, object]]]) -> bytes:
    """What a signature check depends on besides the file: the role, its threshold and the
    listed keys (keyid and key value), in a stable encoding."""
    document = {"role": role, "threshold": threshold, "keys": sorted(keys, key=lambda pair: pair[0])}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).digest()


# ---- what python-tuf's refresh verified -------------------------------------------------------
# A cold sync of a 100k-target repository spent half its time encoding targets.json to canonical
# JSON twice: once inside python-tuf's refresh (TUF spec 5.6.3, threshold of root's targets keys)
# and again in the independent verification before the commit. Both checks are the same library
# call (`Root.verify_delegate`) on the same two inputs: the root python-tuf trusted after its root
# walk and the file's bytes. So when both inputs are *byte for byte* the ones the verification
# before the commit meets, python-tuf's check is that check (decision 14).


@dataclass(frozen=True)
class UpdaterChecks:
    """Top-level files python-tuf's refresh verified, by content, and the root it used.

    `root_digest` is the SHA-256 of the root python-tuf trusted when it verified timestamp,
    snapshot and targets (TUF spec 5.3.10-5.6.3: the final root of its walk); `files` holds
    (role, SHA-256 of the bytes the fetcher delivered). python-tuf raises on any body it does
    not accept, so after a refresh that returned, every delivered body was accepted."""

    root_digest: bytes
    files: frozenset[tuple[str, bytes]]

    def covers(self, root_digest: bytes, role: str, file_digest: bytes) -> bool:
        """True if python-tuf verified exactly these bytes as `role` under exactly this root."""
        return root_digest == self.root_digest and (role, file_digest) in self.files


_ROOT_URL = re.compile(r"([0-9]+)\.root\.json")
_TOP_LEVEL_URL = re.compile(r"(?:[0-9]+\.)?(timestamp|snapshot|targets)\.json")


def updater_checks(
    bootstrap: bytes,
    metadata_url: str,
    attempted: list[str],
    delivered: list[tuple[str, bytes]],
) -> UpdaterChecks | None:
    """What one `Updater.refresh()` verified, from the URLs its fetcher was asked for and the
    bodies it delivered *during that refresh* (the caller slices both to it: a refresh fetches
    only roots and the top-level roles, never a delegated role, so no delegated body can be
    taken for `targets` — e.g. a role named `1.targets` of a repository without consistent
    snapshots, fetched later as `1.targets.json` by a target look-up).

    The root the walk ended with (TUF spec 5.3.4-5.3.5) is known only when python-tuf
    downloaded every root after the bootstrap: the root URLs asked for must be exactly
    bootstrap+1, bootstrap+2, ... with every one delivered but possibly the last (the 404
    that ends the walk). A gap means python-tuf took a root from the local history, which a
    cache writer could remove before the check: then nothing is recorded (None)."""
    try:
        bootstrap_version = int(json.loads(bootstrap)["signed"]["version"])
    except (ValueError, KeyError, TypeError):
        return None
    roots: dict[int, bytes] = {}
    files: set[tuple[str, bytes]] = set()
    for url, body_digest in delivered:
        if not url.startswith(metadata_url):
            return None  # a redirect-free refresh asks only under the metadata URL
        name = url[len(metadata_url) :]
        if (root := _ROOT_URL.fullmatch(name)) is not None:
            roots[int(root.group(1))] = body_digest
        elif (top := _TOP_LEVEL_URL.fullmatch(name)) is not None:
            files.add((top.group(1), body_digest))
    asked = [
        int(match.group(1))
        for url in attempted
        if url.startswith(metadata_url) and (match := _ROOT_URL.fullmatch(url[len(metadata_url) :]))
    ]
    if not asked or asked != list(range(bootstrap_version + 1, bootstrap_version + 1 + len(asked))):
        return None
    if set(roots) not in (set(asked), set(asked[:-1])):
        return None
    newest = roots[max(roots)] if roots else digest(bootstrap)
    return UpdaterChecks(newest, frozenset(files))
