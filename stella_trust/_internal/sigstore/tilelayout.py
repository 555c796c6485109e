"""The layout of a C2SP tiled transparency log (c2sp.org/tlog-tiles): which tiles a tree
of a given size has, their paths, and their bytes parsed.

Tiles are RFC 6962 Merkle Tree Hashes cut into height-8 pieces (tlog-tiles §"Merkle Tree"):
the n-th tile at level l holds, for i in 0..255,

    MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l])

so the tree of size S has floor(S / 256**l) hashes at level l, in full tiles of 256 and one
partial tile of `floor(S / 256**l) mod 256` hashes at the right edge when that is not zero.
One tile has exactly one path, so a path names what it holds. Checking tiles against a
checkpoint is tiles.py's job.

Pure: bytes in, values out, no I/O. Bounded: tree sizes below 2**64, at most `MAX_DEPTH`
entries covered, `MAX_TILES` tiles, `MAX_ENTRY_BUNDLE_BYTES` per entry bundle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from stella_trust._internal.sigstore.merkle import HASH_SIZE, MAX_TREE_SIZE
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
        """A tile at the tree's right edge, narrower than 256: its path carries `.p/<W>`."""
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """tlog-tiles: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`."""
        kind = "entries" if self.entries else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{kind}/{encode_index(self.index)}{suffix}"

    def __str__(self) -> str:
        return self.path


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
            short_path(path), "not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])"
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
    width = min(TILE_WIDTH, hashes_at(size, level) - index * TILE_WIDTH)
    if width <= 0 or index < 0:
        return None
    return TileRef(level=level, index=index, width=width, entries=entries)


def right_edge(size: int) -> list[TileRef]:
    """The partial tiles of the tree of `size`: exactly what its root hash is computed from.

    A tree of size 256 has none at level 0 and `tile/1/000.p/1`, whose one hash is the root.
    """
    require_size(size, "right edge")
    refs = []
    for level in range(levels(size)):
        count = hashes_at(size, level)
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
    require_size(size, "tiles_for")
    if not 0 <= depth <= MAX_DEPTH:
        raise TransparencyLogError("tiles_for", f"depth {depth} is outside 0..{MAX_DEPTH}")
    depth = min(depth, size)
    refs = set(right_edge(size))
    if depth:
        for index in range((size - depth) // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1):
            tile = present_tile(size, 0, index)
            refs.update((tile, replace(tile, entries=True)))
    pending = [ref for ref in refs if not ref.entries and not ref.is_partial]
    while pending:
        parent = parent_tile(size, pending.pop())
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
# The tree's shape


def parent_tile(size: int, ref: TileRef) -> TileRef:
    """The tile one level up that holds the hash of the full tile `ref`."""
    return present_tile(size, ref.level + 1, ref.index // TILE_WIDTH)


def present_tile(size: int, level: int, index: int) -> TileRef:
    """The tile (level, index) of a tree known to have it (`tile_of` without the None)."""
    tile = tile_of(size, level, index)
    if tile is None:  # callers only ask for tiles the tree has
        raise AssertionError(f"tree size {size} has no tile {level}/{index}")
    return tile


def hashes_at(size: int, level: int) -> int:
    """How many hashes level `level` of the tree of `size` has: floor(size / 256**level)."""
    return size >> (TILE_HEIGHT * level)


def levels(size: int) -> int:
    """Number of levels with at least one hash: size < 256**levels."""
    return (size.bit_length() + TILE_HEIGHT - 1) // TILE_HEIGHT


def require_size(size: int, where: str) -> None:
    """Refuse a tree size outside what a checkpoint can state (a uint64)."""
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TransparencyLogError(where, f"tree size {size} is outside 0..2^64-1")


def short_path(path: str, limit: int = 80) -> str:
    """A path cut short for a refusal, so a hostile path cannot flood the message."""
    return path if len(path) <= limit else path[:limit] + "..."
