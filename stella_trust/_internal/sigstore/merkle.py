"""RFC 6962 Merkle tree hashing and RFC 9162 inclusion / consistency proof verification.

Why our own: no public, maintained Python API provides these for Python 3.11 (sigstore-python
has inclusion verification only, in the private `sigstore._internal.merkle`, bound to its
bundle model). The functions are small and each follows the
section it cites, step by step, so a reviewer can check them against the RFC text.

Hashes are SHA-256 (RFC 6962 §2.1); every hash handed in must be 32 bytes, tree sizes and
indexes are bounded by 2**64 - 1 (the checkpoint format's uint64), and proofs by 64 hashes
(a path in a tree of at most 2**64 leaves), so hostile input cannot make these loop long.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError

HASH_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1
MAX_PROOF_HASHES = 64
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 §2.1: MTH({}) = SHA-256()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0)).

    The 0x00 prefix (0x01 for interior nodes) is the second-preimage protection the RFC
    requires: a leaf can never be taken for an interior node.
    """
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash of the leaves whose leaf hashes are given, in order.

    Iterative rather than the RFC's recursion (k = largest power of two below n): leaves are
    merged into perfect subtrees as they arrive (`subtree_roots`), leaving one per set bit
    of n, which `root_from_subtrees` folds exactly as the recursion would. Linear time.
    """
    return root_from_subtrees(subtree_roots(leaf_hashes))


def subtree_roots(hashes: Iterable[bytes]) -> list[bytes]:
    """The roots of the maximal perfect subtrees over `hashes`, largest (leftmost) first.

    `hashes` are leaf hashes, or roots of equal-size aligned perfect subtrees (a tile's
    hashes): RFC 6962 §2.1 combines both the same way. One root per set bit of their count,
    which is what `root_from_subtrees` folds.
    """
    stack: list[tuple[bytes, int]] = []  # (hash, leaf count), leaf counts strictly decreasing
    for index, digest in enumerate(hashes):
        _require_hash(digest, "hashes", f"hash {index}")
        node, count = digest, 1
        while stack and stack[-1][1] == count:
            left, _ = stack.pop()
            node, count = node_hash(left, node), count * 2
        stack.append((node, count))
    return [node for node, _ in stack]


def root_from_subtrees(subtree_roots: Sequence[bytes]) -> bytes:
    """The root of a tree given the roots of its maximal perfect subtrees, left to right.

    RFC 6962 §2.1 splits D[0:n] at the largest power of two k < n, so the tree of size n is
    one perfect subtree per set bit of n, largest first, and its root is
    node_hash(s0, node_hash(s1, ... node_hash(s(m-2), s(m-1)))). The empty list is the empty
    tree (MTH({}) = SHA-256()).
    """
    if not subtree_roots:
        return EMPTY_ROOT
    root = subtree_roots[-1]
    for left in reversed(subtree_roots[:-1]):
        root = node_hash(left, root)
    return root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes, *, where: str = "inclusion proof"
) -> None:
    """RFC 9162 §2.1.3.2: the leaf hash `leaf` is at `index` in the tree of `size` with `root`.

    Raises TransparencyLogError naming `where` when the proof does not verify.
    """
    _require_hash(leaf, where, "leaf hash")
    _require_hash(root, where, "root hash")
    _require_proof(proof, where)
    _require_size(size, where)
    if not 0 <= index < size:
        raise TransparencyLogError(where, f"leaf index {index} is not below tree size {size}")
    expected = _inclusion_path_length(index, size)
    if len(proof) != expected:
        raise TransparencyLogError(
            where, f"{len(proof)} proof hashes, expected {expected} for index {index} in tree size {size}"
        )
    # Steps 2-4 of §2.1.3.2, verbatim.
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise TransparencyLogError(where, "proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # "if LSB(fn) is not set, right-shift ... until"
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    # Step 5.
    if sn != 0:
        raise TransparencyLogError(where, "proof is shorter than the path to the root")
    if r != root:
        raise TransparencyLogError(
            where, f"leaf {index} does not hash to root {root.hex()} of tree size {size} (got {r.hex()})"
        )


class Subtree(NamedTuple):
    """One node of a Merkle tree: `hash` is MTH(D[start:end]) (RFC 6962 §2.1)."""

    start: int
    end: int
    hash: bytes

    @property
    def is_complete(self) -> bool:
        """A complete (perfect) subtree: 2**h leaves starting at a multiple of 2**h.

        Its hash is the same in every tree that holds those leaves, whatever the tree's size
        (RFC 6962 §2.1 splits at powers of two), so two trees of one log must agree on it;
        a node on a tree's right edge (D[k:n], not a power of two) is specific to that size.
        """
        width = self.end - self.start
        return width > 0 and width & (width - 1) == 0 and self.start % width == 0


def inclusion_subtrees(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes, *, where: str = "inclusion proof"
) -> list[Subtree]:
    """Every node an inclusion proof carries or its verification computes, with its range.

    The proof is first verified (`verify_inclusion`, RFC 9162 §2.1.3.2), so every node
    returned is bound to the signed `root`. RFC 9162 §2.1.3.1 defines the path top-down:
    PATH(m, D[0:n]) = PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else PATH(m - k, D[k:n]) :
    MTH(D[0:k]), k the largest power of two below n; the proof lists those siblings leaf to
    root. Walking the same splits gives each sibling's range, and hashing upward from the leaf
    gives the path's own nodes (the leaf's ancestors): the leaf, then sibling and parent at
    each level, ending with the root D[0:size]. At most 129 nodes (64 levels).
    """
    verify_inclusion(leaf, index, size, proof, root, where=where)
    siblings: list[tuple[int, int]] = []  # top-down, as §2.1.3.1 splits
    start, end = 0, size
    while end - start > 1:
        k = 1 << ((end - start - 1).bit_length() - 1)
        if index < start + k:
            siblings.append((start + k, end))
            end = start + k
        else:
            siblings.append((start, start + k))
            start += k
    node = Subtree(index, index + 1, leaf)
    nodes = [node]
    for (first, last), digest in zip(reversed(siblings), proof, strict=True):
        sibling = Subtree(first, last, digest)
        if first < node.start:
            node = Subtree(first, node.end, node_hash(digest, node.hash))
        else:
            node = Subtree(node.start, last, node_hash(node.hash, digest))
        nodes += [sibling, node]
    if node != Subtree(0, size, root):  # verify_inclusion passed: the two walks agree
        raise TransparencyLogError(where, f"the proof's path does not end at the root of tree size {size}")
    return nodes


def verify_consistency(
    size1: int,
    size2: int,
    root1: bytes,
    root2: bytes,
    proof: Sequence[bytes],
    *,
    where: str = "consistency proof",
) -> None:
    """RFC 9162 §2.1.4.2: the tree of `size2` with `root2` extends the tree of `size1` with `root1`.

    Equal sizes need an empty proof and equal roots. A proof from the empty tree (size1 = 0)
    is refused, as transparency-dev/merkle does: it proves nothing (every tree extends the
    empty one), so a caller holding an empty tree has nothing to check.
    """
    _require_hash(root1, where, "first root hash")
    _require_hash(root2, where, "second root hash")
    _require_proof(proof, where)
    _require_size(size2, where)
    if size1 > size2:
        raise TransparencyLogError(where, f"first tree size {size1} is larger than second tree size {size2}")
    if size1 <= 0:
        raise TransparencyLogError(where, "a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        _verify_same_size(size1, root1, root2, proof, where)
        return
    # Step 1.
    if not proof:
        raise TransparencyLogError(where, f"empty proof between tree sizes {size1} and {size2}")
    fr, sr = _consistency_chain(size1, size2, root1, proof, where)
    # Step 7.
    if fr != root1:
        raise TransparencyLogError(where, f"proof does not lead to the root of tree size {size1}")
    if sr != root2:
        raise TransparencyLogError(
            where, f"tree size {size2} (root {root2.hex()}) does not extend tree size {size1}"
        )


def _consistency_chain(
    size1: int, size2: int, root1: bytes, proof: Sequence[bytes], where: str
) -> tuple[bytes, bytes]:
    """Steps 2-6 of RFC 9162 §2.1.4.2; returns (fr, sr) and checks that sn reaches 0."""
    path = list(proof)
    # Step 2: when the first tree is itself a perfect subtree, its root starts the path.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # Step 3.
    fn, sn = size1 - 1, size2 - 1
    # Step 4.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise TransparencyLogError(where, "proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:  # "if LSB(fn) is not set, right-shift ... until"
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise TransparencyLogError(where, "proof is shorter than the path to the root")
    return fr, sr


def _verify_same_size(size: int, root1: bytes, root2: bytes, proof: Sequence[bytes], where: str) -> None:
    """RFC 9162 §2.1.4.1: the consistency proof between a tree and itself is empty."""
    if proof:
        raise TransparencyLogError(where, f"tree sizes are equal ({size}) but the proof is not empty")
    if root1 != root2:
        raise TransparencyLogError(
            where, f"two different roots for tree size {size}: {root1.hex()} and {root2.hex()}"
        )


def _inclusion_path_length(index: int, size: int) -> int:
    """Length of PATH(index, D[0:size]) (RFC 9162 §2.1.3.1).

    Below the level where the paths to `index` and to the last leaf part, every level has a
    sibling (`inner`); above it, one hash per left subtree on the way up (`border`).
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def _require_hash(value: bytes, where: str, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        length = len(value) if isinstance(value, bytes) else type(value).__name__
        raise TransparencyLogError(where, f"{what} is {length} bytes, expected {HASH_SIZE}")


def _require_proof(proof: Sequence[bytes], where: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise TransparencyLogError(
            where, f"{len(proof)} proof hashes, more than the {MAX_PROOF_HASHES} allowed"
        )
    for position, digest in enumerate(proof):
        _require_hash(digest, where, f"proof hash {position}")


def _require_size(size: int, where: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TransparencyLogError(where, f"tree size {size} is outside 0..2^64-1")
