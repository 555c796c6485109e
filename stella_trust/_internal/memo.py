"""What a process remembers about verifications it already made: one object, one rule.

Re-verifying unchanged bytes proves nothing new (docs/design.md, decisions 13 and 14), so a
process remembers, in memory only, what it proved and under which identity it read it:

- proofs keyed by content: root links (anchor, root N, root N+1), threshold signatures
  (delegation, file), target checks (file identity, length and hashes);
- what files held, keyed by their identity (device, inode, size, mtime_ns, ctime_ns): root
  bytes, target listings, whole verified generations and the views built from them;
- what loading costs: settings by the config file's identity and the environment, TLS
  contexts by CA store identity, the proxy variables' reading, Sigstore verifiers by the
  trusted root they were built from.

Every kind sits in one `Bounded` map with the same eviction rule: least recently used goes
first once a map holds more than its entries or its bytes. Nothing here is module state: a
CLI command makes one `VerificationMemo` for its run, the agent and a `TrustWatcher` keep one
for their life, and the public `open_trust()` keeps one per process (`stella_trust.api`).
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FileIdentity(NamedTuple):  # not a dataclass: built at every start-up (issue 24)
    """What changes whenever a file's content may have: any write, in place or by rename,
    changes ctime, which no writer can set back (decision 13)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        """The identity of a file from the `stat` taken when it was read (the one helper every cache
        uses)."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Bounded(Generic[K, V]):
    """A map of at most `max_entries` entries and `max_cost` total cost (by `cost`), least
    recently used first out. Thread-safe: the agent's worker thread and an attestor's threads
    share one memo."""

    def __init__(self, max_entries: int, max_cost: int | None = None, cost: Callable[[V], int] | None = None):
        """`cost` None bounds by entries only; with `cost`, `max_cost` bounds the total too (root
        bytes, whose size an attacker's repository chooses)."""
        self._items: OrderedDict[K, V] = OrderedDict()
        self._max_entries = max_entries
        self._max_cost = max_cost
        self._cost = cost
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None when absent (a value is never None)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def __contains__(self, key: object) -> bool:
        """Present, counting as a use (it is a `get`)."""
        return self.get(key) is not None  # type: ignore[arg-type]

    def put(self, key: K, value: V) -> None:
        """Remember `value`, replacing any old one, then evict least recently used entries until
        both bounds hold again: memory stays bounded whatever a repository serves."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and self._cost is not None:
                self._total -= self._cost(old)
            self._items[key] = value
            if self._cost is not None:
                self._total += self._cost(value)
            while self._items and (
                len(self._items) > self._max_entries
                or (self._max_cost is not None and self._total > self._max_cost)
            ):
                _, evicted = self._items.popitem(last=False)
                if self._cost is not None:
                    self._total -= self._cost(evicted)

    def discard(self, key: K) -> None:
        """Forget one entry, if present."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and self._cost is not None:
                self._total -= self._cost(old)

    def clear(self) -> None:
        """Forget every entry (the memo's `forget`)."""
        with self._lock:
            self._items.clear()
            self._total = 0

    def __len__(self) -> int:
        """Entries held now."""
        return len(self._items)


PROOFS = 100_000  # 32-byte digests: a few MiB at most
FILES = 4096


class VerificationMemo:
    """Every remembered proof and identity of one process (or one CLI command)."""

    def __init__(self) -> None:
        """One bounded map per kind of memory, sized for what it holds: many small proofs, a few
        large verified generations and views."""
        # proofs, by content (tuf/proofs.py says what each key means)
        self.root_links: Bounded[tuple[bytes, bytes, bytes], bool] = Bounded(PROOFS)
        self.signatures: Bounded[tuple[bytes, bytes], bool] = Bounded(PROOFS)
        self.targets_checked: Bounded[tuple[FileIdentity, bytes], bool] = Bounded(FILES)
        self.anchor_versions: Bounded[bytes, int] = Bounded(64)
        # what files held, by identity: root bytes bounded by size (a changing sync hard-links
        # every root into its new generation, and a link changes ctime: new identities)
        self.root_files: Bounded[FileIdentity, tuple[bytes, bytes]] = Bounded(
            FILES, 4 << 20, lambda found: len(found[0])
        )
        # the last root walk from each anchor (rootchain.py): per root, in order, the identity of
        # its file and the bytes that identity names (the same bytes objects as root_files')
        self.root_walks: Bounded[bytes, tuple[tuple[tuple[int, ...], bytes, bytes], ...]] = Bounded(
            16, 4 << 20, lambda steps: sum(len(step[1]) for step in steps)
        )
        # where a sync starts python-tuf (keptroots.newest_proven_root): per anchor, the newest
        # roots a full walk proved, (version, SHA-256, bytes), newest first; forgotten by any walk
        # from that anchor that fails (decision 14)
        self.chain_ends: Bounded[bytes, tuple[tuple[int, bytes, bytes], ...]] = Bounded(
            16, 4 << 20, lambda ends: sum(len(end[2]) for end in ends)
        )
        self.listings: Bounded[FileIdentity, tuple[str, ...]] = Bounded(64)
        # what state.json's bytes say (store._parsed_state), by the exact bytes: unsigned and
        # informational, remembered only so an idle sync does not parse it again
        self.states: Bounded[bytes, Any] = Bounded(2)
        self.role_versions: Bounded[FileIdentity, dict[str, int]] = Bounded(64)  # workcopy.versions_of
        # what a signed service map references, by (name, signed length, hashes, environment)
        self.service_map_references: Bounded[tuple[Any, ...], tuple[str, ...]] = Bounded(16)
        # the reader: verified generations, the views built from them, settings
        self.generations: Bounded[tuple[Any, ...], Any] = Bounded(8)
        self.views: Bounded[tuple[int, int, int], Any] = Bounded(8)
        self.settings: Bounded[tuple[Any, ...], Any] = Bounded(8)
        # the transport: TLS contexts by CA store identity, the proxy variables' reading
        self.tls_contexts: Bounded[tuple[object, ...], Any] = Bounded(8)
        self.proxies: Bounded[tuple[str | None, ...], dict[str, str]] = Bounded(8)
        # Sigstore verifiers, by the SHA-256 of the trusted_root.json they were built from:
        # identical bytes are identical trust (sigstore/verify.py)
        self.verifiers: Bounded[bytes, Any] = Bounded(4)

    def forget(self) -> None:
        """Drop everything (a benchmark measuring a fresh process; never needed for safety)."""
        for value in vars(self).values():
            if isinstance(value, Bounded):
                value.clear()
