"""C2SP tiled transparency logs (c2sp.org/tlog-tiles): paths, parsing, and checking tiles.

Why our own: no maintained public Python API covers tlog-tiles for Python 3.11 (see the
issue 14 report). Tiles are RFC 6962 Merkle Tree Hashes cut into height-8 pieces
(tlog-tiles §"Merkle Tree"): the n-th tile at level l holds, for i in 0..255,

    MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l])

so the tree of size S has floor(S / 256**l) hashes at level l, in full tiles of 256 and one
partial tile of `floor(S / 256**l) mod 256` hashes at the right edge when that is not zero.
The root of S is computed from those partial tiles alone; a full tile is checked against the
hash of it one level up. `verify_tiles` accepts a set of tiles only when every one of them
is tied to the checkpoint's root that way, and every entry bundle to its level-0 tile.

Pure: bytes in, values out, no I/O. Bounded: tree sizes below 2**64, at most `MAX_DEPTH`
entries covered, `MAX_TILES` tiles, `MAX_ENTRY_BUNDLE_BYTES` per entry bundle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from stella_trust._internal.sigstore.merkle import (
    HASH_SIZE,
    MAX_TREE_SIZE,
    leaf_hash,
    root_from_leaf_hashes,
    root_from_subtrees,
    subtree_roots,
)
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError

TILE_HEIGHT = 8  # tlog-tiles: "Full tiles MUST be exactly 256 hashes wide"
TILE_WIDTH = 1 << TILE_HEIGHT
FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE
MAX_LEVEL = 63  # tlog-tiles: <L> is "between 0 and 63"
MAX_ENTRY_SIZE = 0xFFFF  # tlog-tiles §"Log entries": uint16 length prefix
MAX_ENTRY_BUNDLE_BYTES = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)  # the format's own bound; fetchers cap lower
MAX_DEPTH = 1 << 20  # entries a sealed log state may cover: 4096 level-0 tiles and bundles
MAX_TILES = 10_000  # above len(tiles_for(any size, MAX_DEPTH)): about 8,220 (tested)
MAX_PATH = 96  # the longest path of a tree below 2**64 is about 50 characters

_PATH_RE = re.compile(
    r"tile/(?:(?P<entries>entries)|(?P<level>0|[1-9][0-9]?))/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


@dataclass(frozen=True, order=True)
class TileRef:
    """One tile (`entries=False`) or entry bundle (`entries=True`, level 0) of a tree."""

    level: int
    index: int
    width: int
    entries: bool = False

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """tlog-tiles: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`."""
        kind = "entries" if self.entries else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{kind}/{encode_index(self.index)}{suffix}"

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class VerifiedTiles:
    """Tiles that `verify_tiles` tied to the root of a tree of `size`: hashes and entries."""

    size: int
    root_hash: bytes
    hashes: Mapping[tuple[int, int], tuple[bytes, ...]]  # (level, tile index) -> tile hashes
    entries: Mapping[int, tuple[bytes, ...]]  # tile index -> entries of its bundle


# ---------------------------------------------------------------------------------------------
# Paths


def encode_index(index: int) -> str:
    """tlog-tiles: <N> in zero-padded 3-digit path elements, all but the last prefixed `x`.

    1234067 -> `x001/x234/067`; 5 -> `005`.
    """
    if index < 0:
        raise TransparencyLogError("tile path", f"tile index {index} is negative")
    groups = [index % 1000]
    while index >= 1000:
        index //= 1000
        groups.append(index % 1000)
    groups.reverse()
    return "/".join([f"x{group:03d}" for group in groups[:-1]] + [f"{groups[-1]:03d}"])


def parse_tile_path(path: str) -> TileRef:
    """The tile a path names (tlog-tiles §"Merkle Tree", §"Log entries"), canonical form only.

    Leading zeros in <L> or <W>, a leading `x000` group, level > 63 or width 256 in a `.p/`
    suffix are refused: one tile has exactly one path.
    """
    match = _PATH_RE.fullmatch(path) if len(path) <= MAX_PATH else None
    if match is None:
        raise TransparencyLogError(
            _short(path), "not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])"
        )
    level = 0 if match["entries"] else int(match["level"])
    width = int(match["width"]) if match["width"] else TILE_WIDTH
    if level > MAX_LEVEL or (match["width"] and width >= TILE_WIDTH):
        raise TransparencyLogError(
            path, f"level must be 0..{MAX_LEVEL} and a partial width 1..{TILE_WIDTH - 1}"
        )
    index = int(match["index"].replace("x", "").replace("/", ""))
    ref = TileRef(level=level, index=index, width=width, entries=bool(match["entries"]))
    if ref.path != path:
        raise TransparencyLogError(path, f"not the canonical path of its tile ({ref.path})")
    return ref


# ---------------------------------------------------------------------------------------------
# Which tiles a tree has, and which cover its last entries


def tile_of(size: int, level: int, index: int, *, entries: bool = False) -> TileRef | None:
    """The tile (level, index) as the tree of `size` has it (full or partial), None if absent.

    tlog-tiles §"Partial Tiles": level l has floor(size / 256**l) hashes.
    """
    width = min(TILE_WIDTH, _hashes_at(size, level) - index * TILE_WIDTH)
    if width <= 0 or index < 0:
        return None
    return TileRef(level=level, index=index, width=width, entries=entries)


def right_edge(size: int) -> list[TileRef]:
    """The partial tiles of the tree of `size`: exactly what its root hash is computed from.

    A tree of size 256 has none at level 0 and `tile/1/000.p/1`, whose one hash is the root.
    """
    _require_size(size, "right edge")
    refs = []
    for level in range(_levels(size)):
        count = _hashes_at(size, level)
        if count % TILE_WIDTH:
            refs.append(TileRef(level=level, index=count // TILE_WIDTH, width=count % TILE_WIDTH))
    return refs


def tiles_for(size: int, depth: int) -> list[TileRef]:
    """The tiles and entry bundles a sealed log state of tree `size` carries for `depth` entries.

    (a) the right edge (`right_edge`), to recompute the checkpoint's root; (b) the level-0
    tiles and entry bundles holding entries [size - depth, size); and, for every full tile,
    the tile one level up holding its hash, so each tile can be checked against the root.
    `depth` larger than `size` covers the whole log. Sorted by level, index, kind.
    """
    _require_size(size, "tiles_for")
    if not 0 <= depth <= MAX_DEPTH:
        raise TransparencyLogError("tiles_for", f"depth {depth} is outside 0..{MAX_DEPTH}")
    depth = min(depth, size)
    refs = set(right_edge(size))
    if depth:
        for index in range((size - depth) // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1):
            tile = _present(size, 0, index)
            refs.update((tile, replace(tile, entries=True)))
    pending = [ref for ref in refs if not ref.entries and not ref.is_partial]
    while pending:
        parent = _parent(size, pending.pop())
        if parent not in refs:
            refs.add(parent)
            if not parent.is_partial:
                pending.append(parent)
    return sorted(refs)


# ---------------------------------------------------------------------------------------------
# Parsing tiles and entry bundles


def parse_hash_tile(ref: TileRef, data: bytes) -> tuple[bytes, ...]:
    """tlog-tiles §"Merkle Tree": a tile is its W hashes concatenated, exactly W * 32 bytes."""
    expected = ref.width * HASH_SIZE
    if ref.entries or len(data) != expected:
        raise TransparencyLogError(ref.path, f"{len(data)} bytes, expected {expected}")
    return tuple(data[offset : offset + HASH_SIZE] for offset in range(0, expected, HASH_SIZE))


def parse_entry_bundle(
    ref: TileRef, data: bytes, *, max_bytes: int = MAX_ENTRY_BUNDLE_BYTES
) -> tuple[bytes, ...]:
    """tlog-tiles §"Log entries": big-endian uint16 length-prefixed entries, exactly W of them."""
    if len(data) > max_bytes:
        raise TransparencyLogError(ref.path, f"{len(data)} bytes, more than the {max_bytes} allowed")
    entries: list[bytes] = []
    position = 0
    while position < len(data):
        if len(entries) == ref.width:
            raise TransparencyLogError(
                ref.path, f"{len(data) - position} bytes after the last of {ref.width} entries"
            )
        if position + 2 > len(data):
            raise TransparencyLogError(ref.path, f"entry {len(entries)}: length prefix cut short")
        length = int.from_bytes(data[position : position + 2], "big")
        position += 2
        if position + length > len(data):
            raise TransparencyLogError(
                ref.path, f"entry {len(entries)} needs {length} bytes, {len(data) - position} left"
            )
        entries.append(data[position : position + length])
        position += length
    if len(entries) != ref.width:
        raise TransparencyLogError(ref.path, f"{len(entries)} entries, expected {ref.width}")
    return tuple(entries)


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
    _require_size(size, f"{prefix}tiles")
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
    whatever the two tree sizes (issue 21); agreement alone is not proof of consistency.
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
        ref = _present(size, level, index)
        parent_ref = _parent(size, ref)
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
        ref = _present(size, 0, index)
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
    for level in reversed(range(_levels(size))):
        count = _hashes_at(size, level)
        needed = count % TILE_WIDTH
        if not needed:
            continue
        tile = hashes.get((level, count // TILE_WIDTH))
        if tile is None or len(tile) < needed:
            return None
        roots.extend(subtree_roots(tile[:needed]))
    return root_from_subtrees(roots)


def _parent(size: int, ref: TileRef) -> TileRef:
    """The tile one level up that holds the hash of the full tile `ref`."""
    return _present(size, ref.level + 1, ref.index // TILE_WIDTH)


def _present(size: int, level: int, index: int) -> TileRef:
    tile = tile_of(size, level, index)
    if tile is None:  # callers only ask for tiles the tree has
        raise AssertionError(f"tree size {size} has no tile {level}/{index}")
    return tile


def _hashes_at(size: int, level: int) -> int:
    return size >> (TILE_HEIGHT * level)


def _levels(size: int) -> int:
    """Number of levels with at least one hash: size < 256**levels."""
    return (size.bit_length() + TILE_HEIGHT - 1) // TILE_HEIGHT


def _require_size(size: int, where: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TransparencyLogError(where, f"tree size {size} is outside 0..2^64-1")


def _short(path: str, limit: int = 80) -> str:
    return path if len(path) <= limit else path[:limit] + "..."
