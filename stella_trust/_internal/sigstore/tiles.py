"""Checking a set of C2SP tiles (c2sp.org/tlog-tiles) against a checkpoint, and reading a
verified tree: its leaves, entries, the root of any smaller size, where two states disagree.

The root of a tree of size S is computed from its partial (right-edge) tiles alone; a full
tile is checked against the hash of it one level up. `verify_tiles` accepts a set of tiles
only when every one of them is tied to the checkpoint's root that way, and every entry
bundle to its level-0 tile; which tiles a tree has, and their paths, are tilelayout.py's.

Why our own: no maintained public Python API covers tlog-tiles for Python 3.11. Pure: bytes
in, values out, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from stella_trust._internal.sigstore.merkle import (
    HASH_SIZE,
    Subtree,
    leaf_hash,
    root_from_leaf_hashes,
    root_from_subtrees,
    subtree_roots,
)
from stella_trust._internal.sigstore.tilelayout import (
    MAX_ENTRY_BUNDLE_BYTES,
    MAX_TILES,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileRef,
    hashes_at,
    levels,
    parent_tile,
    parse_entry_bundle,
    parse_hash_tile,
    parse_tile_path,
    present_tile,
    require_size,
    right_edge,
    tile_of,
)
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError


@dataclass(frozen=True)
class VerifiedTiles:
    """Tiles that `verify_tiles` tied to the root of a tree of `size`: hashes and entries."""

    size: int
    root_hash: bytes
    hashes: Mapping[tuple[int, int], tuple[bytes, ...]]  # (level, tile index) -> tile hashes
    entries: Mapping[int, tuple[bytes, ...]]  # tile index -> entries of its bundle


# ---------------------------------------------------------------------------------------------
# Verifying a set of tiles against a checkpoint


def verify_tiles(
    tiles: Mapping[str, bytes],
    size: int,
    root_hash: bytes,
    *,
    log: str = "",
    max_entry_bundle_bytes: int = MAX_ENTRY_BUNDLE_BYTES,
) -> VerifiedTiles:
    """Check that `tiles` (path -> bytes) all belong to the tree of `size` with `root_hash`.

    Every path must name a tile the tree has (right width), with the right length; the right
    edge must recompute `root_hash` (RFC 6962 §2.1 MTH); every full tile must hash to its
    entry one level up, which must be carried; every entry bundle's entries must hash
    (RFC 6962 leaf hash) to its carried level-0 tile. `log` prefixes the messages.
    """
    prefix = f"{log} " if log else ""
    require_size(size, f"{prefix}tiles")
    if len(root_hash) != HASH_SIZE:
        raise TransparencyLogError(
            f"{prefix}tiles", f"root hash is {len(root_hash)} bytes, expected {HASH_SIZE}"
        )
    if len(tiles) > MAX_TILES:
        raise TransparencyLogError(f"{prefix}tiles", f"{len(tiles)} tiles, more than the {MAX_TILES} allowed")
    hashes, entries = _parse_all(tiles, size, prefix, max_entry_bundle_bytes)
    _check_root(hashes, size, root_hash, prefix)
    _check_full_tiles(hashes, size, prefix)
    _check_entries(hashes, entries, size, prefix)
    return VerifiedTiles(size=size, root_hash=root_hash, hashes=hashes, entries=entries)


def leaf_at(tiles: VerifiedTiles, index: int) -> bytes | None:
    """The leaf hash at `index` in the verified tree, or None when no carried tile holds it."""
    if not 0 <= index < tiles.size:
        return None
    tile = tiles.hashes.get((0, index // TILE_WIDTH))
    offset = index % TILE_WIDTH
    return tile[offset] if tile is not None and offset < len(tile) else None


def entry_at(tiles: VerifiedTiles, index: int) -> bytes | None:
    """The entry at `index`, or None when no carried entry bundle holds it."""
    if not 0 <= index < tiles.size:
        return None
    bundle = tiles.entries.get(index // TILE_WIDTH)
    offset = index % TILE_WIDTH
    return bundle[offset] if bundle is not None and offset < len(bundle) else None


def root_at(tiles: VerifiedTiles, size: int) -> bytes | None:
    """The root hash of the tree's first `size` entries, or None when the tiles cannot tell.

    The tree of `size` is the same leaves as a prefix, so its root is folded from the same
    per-level hashes (RFC 6962 §2.1); any size within the covered depth can be computed.
    This is how a smaller checkpoint is checked for consistency with a sealed one.
    """
    if not 0 <= size <= tiles.size:
        return None
    return _root_from(tiles.hashes, size)


def covered_depth(tiles: VerifiedTiles) -> int:
    """How many of the last entries have their leaf hash carried, without a gap."""
    first = tiles.size
    while first > 0 and (0, (first - 1) // TILE_WIDTH) in tiles.hashes:
        first = (first - 1) // TILE_WIDTH * TILE_WIDTH
    return tiles.size - first


def check_leaf(tiles: VerifiedTiles, leaf: bytes, index: int, *, what: str = "entry") -> bool:
    """Whether the sealed tree confirms `leaf` at `index`: True if it does, False if it cannot
    tell (index not covered, or beyond the sealed size); raises if it holds another leaf there."""
    held = leaf_at(tiles, index)
    if held is None:
        return False
    if held != leaf:
        raise TransparencyLogError(
            what, f"the sealed log of size {tiles.size} holds another leaf at index {index} ({held.hex()})"
        )
    return True


def check_root(tiles: VerifiedTiles, size: int, root: bytes, *, what: str = "checkpoint") -> bool:
    """Whether the sealed tree confirms `root` for tree `size`: True if it does, False if it
    cannot tell (size larger than sealed, or before the covered depth); raises if it differs."""
    computed = root_at(tiles, size)
    if computed is None:
        return False
    if computed != root:
        raise TransparencyLogError(
            what,
            f"root {root.hex()} of tree size {size} is not consistent with the sealed log "
            f"of size {tiles.size} (which gives {computed.hex()})",
        )
    return True


@dataclass(frozen=True)
class HeldSubtree:
    """A complete subtree whose hash the verified tiles hold: `hashes` of `ref`, from `first`."""

    start: int
    end: int
    hash: bytes
    ref: TileRef
    first: int  # index of the first tile hash it is computed from
    count: int  # how many (a power of two, at most 128)

    @property
    def where(self) -> str:
        """The tile hash(es) it comes from, for a message: `tile/1/000.p/11 hash 0`."""
        if self.count == 1:
            return f"{self.ref.path} hash {self.first}"
        return f"{self.ref.path} hashes {self.first}-{self.first + self.count - 1}"


def subtree_at(tiles: VerifiedTiles, start: int, end: int) -> HeldSubtree | None:
    """MTH(D[start:end]) as the verified tiles give it, for a complete subtree lying wholly
    inside the tree; None when it is not complete, not inside, or not held.

    tlog-tiles §"Merkle Tree": hash i of tile (l, n) is MTH(D[(n*256+i)*256**l :
    (n*256+i+1)*256**l]). A complete subtree of 2**h leaves (h = 8l + r, aligned at a multiple
    of 2**h) is therefore the MTH of 2**r consecutive level-l hashes, all in one level-l tile
    (RFC 6962 §2.1 combines them like leaves). That tile is the only place to look: every full
    tile below it has it as parent, which verify_tiles requires to be held too.
    """
    if not Subtree(start, end, b"").is_complete or end > tiles.size:
        return None
    level, rest = divmod((end - start).bit_length() - 1, TILE_HEIGHT)
    position = start >> (TILE_HEIGHT * level)
    tile = tiles.hashes.get((level, position // TILE_WIDTH))
    first, count = position % TILE_WIDTH, 1 << rest
    if tile is None or first + count > len(tile):
        return None
    ref = present_tile(tiles.size, level, position // TILE_WIDTH)
    return HeldSubtree(start, end, root_from_leaf_hashes(tile[first : first + count]), ref, first, count)


def shared_subtrees(tiles: VerifiedTiles, nodes: list[Subtree]) -> list[tuple[Subtree, HeldSubtree]]:
    """Each of `nodes` (e.g. merkle.inclusion_subtrees) whose hash the verified tiles also
    hold, paired with the held one: every hash two trees of one log must agree on, whatever
    their sizes (a disagreement is a fork; agreement is not a consistency proof)."""
    shared = []
    for node in nodes:
        held = subtree_at(tiles, node.start, node.end)
        if held is not None:
            shared.append((node, held))
    return shared


@dataclass(frozen=True)
class Disagreement:
    """One hash two verified tile sets both hold, with different values: the log showed two
    histories. `ref` is the tile as the smaller of the two trees has it."""

    ref: TileRef
    position: int  # hash index inside the tile
    first: bytes
    second: bytes

    def __str__(self) -> str:
        return f"{self.ref.path} hash {self.position}"


def first_disagreement(first: VerifiedTiles, second: VerifiedTiles) -> Disagreement | None:
    """The first hash both tile sets hold that differs, or None when every shared hash agrees.

    tlog-tiles §"Merkle Tree": hash i of tile (l, n) is MTH(D[(n*256+i)*256**l :
    (n*256+i+1)*256**l]), a full subtree whatever the tree's size, so two states of one log
    must agree on every (level, index, position) both hold — full tiles, partial edge tiles
    and the shared prefix of a partial and a wider tile alike. Each side carries the parent of
    every full tile it holds (verify_tiles), so a full tile on one side is compared through its
    parent's hash whenever the other side holds that parent. Disagreement is proof of a fork,
    whatever the two tree sizes; agreement alone is not proof of consistency.
    """
    smaller = first if first.size <= second.size else second
    for key in sorted(first.hashes.keys() & second.hashes.keys()):
        a, b = first.hashes[key], second.hashes[key]
        shared = min(len(a), len(b))
        if a[:shared] == b[:shared]:
            continue
        position = next(i for i in range(shared) if a[i] != b[i])
        ref = tile_of(smaller.size, key[0], key[1]) or TileRef(key[0], key[1], shared)
        return Disagreement(ref=ref, position=position, first=a[position], second=b[position])
    return None


# ---------------------------------------------------------------------------------------------
# Internals


def _parse_all(
    tiles: Mapping[str, bytes], size: int, prefix: str, max_bundle: int
) -> tuple[dict[tuple[int, int], tuple[bytes, ...]], dict[int, tuple[bytes, ...]]]:
    hashes: dict[tuple[int, int], tuple[bytes, ...]] = {}
    entries: dict[int, tuple[bytes, ...]] = {}
    for path, data in tiles.items():
        try:
            ref = parse_tile_path(path)
            expected = tile_of(size, ref.level, ref.index, entries=ref.entries)
            if expected != ref:
                should = f", it has {expected.path}" if expected is not None else ""
                raise TransparencyLogError(path, f"not a tile of the tree of size {size}{should}")
            if ref.entries:
                entries[ref.index] = parse_entry_bundle(ref, data, max_bytes=max_bundle)
            else:
                hashes[(ref.level, ref.index)] = parse_hash_tile(ref, data)
        except TransparencyLogError as exc:
            raise TransparencyLogError(f"{prefix}{exc.where}", exc.problem) from None
    return hashes, entries


def _check_root(
    hashes: Mapping[tuple[int, int], tuple[bytes, ...]], size: int, root: bytes, prefix: str
) -> None:
    for ref in right_edge(size):
        if (ref.level, ref.index) not in hashes:
            raise TransparencyLogError(
                f"{prefix}{ref.path}", f"missing: needed for the root of tree size {size}"
            )
    computed = _root_from(hashes, size)
    if computed != root:
        raise TransparencyLogError(
            f"{prefix}tiles",
            f"the tiles hash to root {(computed or b'').hex()}, the checkpoint says {root.hex()} "
            f"(tree size {size})",
        )


def _check_full_tiles(hashes: Mapping[tuple[int, int], tuple[bytes, ...]], size: int, prefix: str) -> None:
    """tlog-tiles: each hash at level l+1 is the MTH of a full tile at level l."""
    for (level, index), tile in sorted(hashes.items(), reverse=True):
        if len(tile) < TILE_WIDTH:
            continue
        ref = present_tile(size, level, index)
        parent_ref = parent_tile(size, ref)
        parent = hashes.get((parent_ref.level, parent_ref.index))
        if parent is None:
            raise TransparencyLogError(
                f"{prefix}{ref.path}", f"cannot be checked: {parent_ref.path} is not carried"
            )
        computed, held = root_from_leaf_hashes(tile), parent[index % TILE_WIDTH]
        if computed != held:
            raise TransparencyLogError(
                f"{prefix}{ref.path}", f"hashes to {computed.hex()}, {parent_ref.path} holds {held.hex()}"
            )


def _check_entries(
    hashes: Mapping[tuple[int, int], tuple[bytes, ...]],
    entries: Mapping[int, tuple[bytes, ...]],
    size: int,
    prefix: str,
) -> None:
    """tlog-tiles §"Log entries": each entry hashes to the matching hash of the level-0 tile."""
    for index, bundle in sorted(entries.items()):
        ref = present_tile(size, 0, index)
        tile = hashes.get((0, index))
        if tile is None:
            raise TransparencyLogError(
                f"{prefix}{replace(ref, entries=True).path}", f"cannot be checked: {ref.path} is not carried"
            )
        for offset, (entry, held) in enumerate(zip(bundle, tile, strict=True)):
            if leaf_hash(entry) != held:
                raise TransparencyLogError(
                    f"{prefix}{replace(ref, entries=True).path}",
                    f"entry {index * TILE_WIDTH + offset} does not hash to its leaf in {ref.path}",
                )


def _root_from(hashes: Mapping[tuple[int, int], tuple[bytes, ...]], size: int) -> bytes | None:
    """RFC 6962 §2.1 MTH of the first `size` leaves from per-level tile hashes, None if missing.

    Level by level from the top, the hashes of level l not covered by a level-(l+1) hash are
    the first `floor(size / 256**l) mod 256` of tile floor(size / 256**(l+1)); their maximal
    perfect subtrees, in order, are the tree's (one per set bit of size).
    """
    roots: list[bytes] = []
    for level in reversed(range(levels(size))):
        count = hashes_at(size, level)
        needed = count % TILE_WIDTH
        if not needed:
            continue
        tile = hashes.get((level, count // TILE_WIDTH))
        if tile is None or len(tile) < needed:
            return None
        roots.extend(subtree_roots(tile[:needed]))
    return root_from_subtrees(roots)
