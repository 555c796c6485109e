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
import json
import re
import threading
from dataclasses import dataclass

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
    return (anchor_digest, previous, current) in _links  # one C-level lookup: atomic under the GIL


def remember(anchor_digest: bytes, links: list[tuple[bytes, bytes]]) -> None:
    """Record links that verified (offline.verify_root_chain calls this only after the check)."""
    with _lock:
        if len(_links) + len(links) > MAX_LINKS:
            _links.clear()
        _links.update((anchor_digest, previous, current) for previous, current in links)


def forget() -> None:
    """Drop everything (tests and benchmarks measuring a fresh process)."""
    with _lock:
        global _file_bytes
        _links.clear()
        _signatures.clear()
        _files.clear()
        _file_bytes = 0
        _targets.clear()


# ---- root files already read ------------------------------------------------------------------
# (device, inode, size, mtime_ns, ctime_ns) -> (bytes, SHA-256) of a root file read whole while its
# identity held still (offline._root_file). Any write changes ctime, which no writer can set back
# (decision 13), so a file with a remembered identity holds the remembered bytes. Remembering
# bytes proves nothing by itself: the links above decide what is trusted.
FileIdentity = tuple[int, int, int, int, int]
MAX_FILES = 4096
# Bytes of root files held at most: the oldest identities go first. A changing sync hard-links
# every root into its new generation, and a link changes the file's ctime, so each commit adds
# new identities; a long-running agent must not grow by a copy of the root history per commit
# (issue 20: 10,000 agent cycles hold RSS flat).
MAX_FILE_BYTES = 4 << 20
_files: dict[FileIdentity, tuple[bytes, bytes]] = {}
_file_bytes = 0


def seen_file(identity: FileIdentity) -> tuple[bytes, bytes] | None:
    return _files.get(identity)


def remember_file(identity: FileIdentity, found: tuple[bytes, bytes]) -> None:
    global _file_bytes
    with _lock:
        if identity in _files:
            return
        _files[identity] = found
        _file_bytes += len(found[0])
        while _files and (_file_bytes > MAX_FILE_BYTES or len(_files) > MAX_FILES):
            oldest = next(iter(_files))
            _file_bytes -= len(_files.pop(oldest)[0])


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
    return (delegation, file_digest) in _signatures


def remember_signature(delegation: bytes, file_digest: bytes) -> None:
    with _lock:
        if len(_signatures) >= MAX_LINKS:
            _signatures.clear()
        _signatures.add((delegation, file_digest))


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


# ---- target files already checked -------------------------------------------------------------
# TUF spec 5.7.3: a target is accepted when its length and hashes are the ones its (verified)
# TargetFile lists. That is a pure function of the file's bytes and (length, hashes); a file whose
# identity held still across the check holds the same bytes while its identity is unchanged
# (decision 13). A bundle import checks each staged target, then the commit's verification would
# hash the same 200 MB again.
_targets: set[tuple[FileIdentity, bytes]] = set()  # (file identity, digest of length + hashes)


def target_checked(identity: FileIdentity, expected: bytes) -> bool:
    return (identity, expected) in _targets


def remember_target(identity: FileIdentity, expected: bytes) -> None:
    with _lock:
        if len(_targets) >= MAX_FILES:
            _targets.clear()
        _targets.add((identity, expected))
