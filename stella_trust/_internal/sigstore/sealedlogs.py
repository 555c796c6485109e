"""Sealed transparency-log state: a tile log's checkpoint and tiles, carried to a host.

A host holds the log *keys* from its verified trust; a sealed log state lets it also check
that the log a bundle was entered in is the log everyone saw. For each tile-based log
(Rekor v2, C2SP tlog-tiles) a bundle may carry its checkpoint (a C2SP signed note) and the
tiles covering the last N entries and the tree's right edge. Nothing here is believed
because a file says so: every use re-checks the checkpoint's signature with the log key
from the *verified* trust and recomputes the checkpoint's root from the tiles (RFC 6962,
tiles.py).

A log is identified by what the trust says about it, never by where it is served
(decision 15): the state lives under `<cache>/tlogs/<log id>/` and its checkpoint
origin is the name the trust binds to the log's key — for Rekor v2 the log ID *is*
SHA-256(origin || 0x0A || 0x01 || key) (signed-note §"Ed25519 signatures"), so the origin
is checked against the log ID, not the URL, and a log whose URL moves keeps its state. Only
a log whose trust entry binds no name (an ECDSA key, or a log ID that is the key's SPKI
hash) falls back to the base URL's host[:port] at first sight, and to the held state's own
origin after that.

A log state never moves backwards and never forks (`reconcile`): every hash the carried
and held states share must agree (any disagreement is a fork: that state is refused,
loudly); a held state is replaced only by a larger tree whose tiles recompute the held root
(an equality recomputed here, the tiles' own consistency proof); anything else keeps the
held state and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stella_trust._internal.fs import create_exclusive, read_untrusted
from stella_trust._internal.sigstore.signednote import (
    Checkpoint,
    LogPublicKey,
    Note,
    ed25519_key_hash,
    load_log_key,
    parse_note,
    verify_checkpoint,
)
from stella_trust._internal.sigstore.tilelayout import MAX_TILES, TILE_WIDTH, parse_tile_path
from stella_trust._internal.sigstore.tiles import (
    VerifiedTiles,
    covered_depth,
    first_disagreement,
    root_at,
    verify_tiles,
)
from stella_trust._internal.sigstore.tlogerrors import LogForkError as LogForkError
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust.errors import CacheVerificationError, UnsafeFileError
from stella_trust.sigstore_types import TransparencyLog

CHECKPOINT = "checkpoint"
RECORD = "sealed.json"  # unsigned facts for display: when the state was fetched, from where
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_LOG_BYTES = 256 * 1024 * 1024  # all tiles and entry bundles of one log state


@dataclass(frozen=True)
class SealedLog:
    """A log state whose checkpoint verified with the log's key and whose tiles give its root."""

    log: TransparencyLog
    checkpoint: Checkpoint
    tiles: VerifiedTiles
    files: Mapping[str, bytes]  # "checkpoint" and "tile/..." -> bytes, as carried
    fetched_at: str | None = None  # unsigned: when the exporting host fetched it

    @property
    def log_id(self) -> str:
        """The trust's id for the log (hex): where the state is stored and how it is named."""
        return self.log.log_id

    @property
    def name(self) -> str:
        """The log's own signed name (its checkpoint origin), for messages."""
        return self.checkpoint.origin

    @property
    def depth(self) -> int:
        """How many of the last entries the sealed tiles cover (their leaves and entries)."""
        return covered_depth(self.tiles)

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The state as `--json` and the bundle manifest describe it; `now` adds its age."""
        document: dict[str, Any] = {
            "log_id": self.log_id,
            "base_url": self.log.base_url,
            "origin": self.checkpoint.origin,
            "tree_size": self.checkpoint.size,
            "root_hash": self.checkpoint.root_hash.hex(),
            "depth": self.depth,
            "tiles": sum(1 for name in self.files if name != CHECKPOINT),
            "fetched_at": self.fetched_at,
        }
        if now is not None and self.fetched_at is not None:
            try:  # unsigned, from a bundle's manifest: shown only when it reads as a time
                fetched = datetime.fromisoformat(self.fetched_at.replace("Z", "+00:00"))
                document["age_seconds"] = max(0, int((now - fetched).total_seconds()))
            except (ValueError, TypeError):
                document["fetched_at"] = None
        return document


def origin_of(base_url: str) -> str:
    """The checkpoint origin a log's URL suggests: its host, with the port when it has one
    (Rekor v2 signs `log2025-1.rekor.sigstore.dev`). Used only for a log whose trust
    entry binds no name (`bound_origin`), and in messages before a checkpoint is verified."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def bound_origin(log: TransparencyLog, note: Note, key: LogPublicKey) -> str | None:
    """The checkpoint name the trust binds to `log`, or None when its entry binds none.

    signed-note §"Ed25519 signatures": a key's ID is SHA-256(name || 0x0A || 0x01 || key), and
    Rekor v2 publishes that whole hash as the log's `logId.keyId`. So for an Ed25519 log whose
    log ID is not simply its key's SPKI hash, the one name whose hash with the trust's key
    equals the trust's log ID is the log's name, whatever URL the trust lists it under: the
    candidates are the names on the note's signature lines, kept only if they hash to the log
    ID (32 bytes, not the unsigned 4-byte hint). None for ECDSA keys and SPKI-hash log IDs.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(key, Ed25519PublicKey) or log.log_id == log.spki_sha256:
        return None
    for signature in note.signatures:
        if ed25519_key_hash(signature.name, key).hex() == log.log_id:
            return signature.name
    raise TransparencyLogError(
        f"{origin_of(log.base_url)} checkpoint",
        f"no signature line carries the name the trust binds to this log's key (log ID {log.log_id[:16]}…)",
    )


def verify_log_checkpoint(
    log: TransparencyLog, data: bytes, *, pinned: str | None = None, where: str | None = None
) -> Checkpoint:
    """`data` as a checkpoint of `log`: signed by the log's key from the verified trust, with the
    origin the trust binds to that key (`bound_origin`); for a log whose entry binds no name,
    `pinned` (the held state's own origin) or else the base URL's host[:port]."""
    label = where or f"{origin_of(log.base_url)} checkpoint"
    key = load_log_key(log_key_der(log), where=label)
    bound = bound_origin(log, parse_note(data, where=label), key)
    origin = bound if bound is not None else pinned if pinned is not None else origin_of(log.base_url)
    return verify_checkpoint(data, origin=origin, public_key=key, where=where or f"{origin} checkpoint")


def own_origin(data: bytes | None) -> str | None:
    """The first line of a checkpoint's text as written (unverified: only a candidate that
    `verify_log_checkpoint` then checks the log's signature against)."""
    if data is None:
        return None
    try:
        return parse_note(data).text.split("\n", 1)[0]
    except TransparencyLogError:
        return None


def tile_logs(logs: Iterable[TransparencyLog], now: datetime) -> list[TransparencyLog]:
    """The active tile-based logs: Rekor v2 (from the signing config or its Ed25519 key)."""
    return [log for log in logs if log.kind == "rekor" and log.rekor_version == 2 and log.active(now)]


def log_key_der(log: TransparencyLog) -> bytes:
    """The log's public key as DER SubjectPublicKeyInfo, the form a signed note's key is
    built from and compared in."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    key = load_pem_public_key(log.public_key_pem.encode())
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def verify_log_state(
    log: TransparencyLog,
    files: Mapping[str, bytes],
    fetched_at: str | None = None,
    *,
    pinned: str | None = None,
) -> SealedLog:
    """The checkpoint signed by `log`'s key with the log's own name (`verify_log_checkpoint`),
    then every tile tied to the checkpoint's root. Raises TransparencyLogError naming the log
    and what failed."""
    label = origin_of(log.base_url)
    data = files.get(CHECKPOINT)
    if data is None:
        raise TransparencyLogError(label, "no checkpoint in the sealed log state")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise TransparencyLogError(label, f"checkpoint is {len(data)} bytes, above {MAX_CHECKPOINT_BYTES}")
    checkpoint = verify_log_checkpoint(log, data, pinned=pinned)
    tiles = {path: blob for path, blob in files.items() if path != CHECKPOINT}
    verified = verify_tiles(tiles, checkpoint.size, checkpoint.root_hash, log=checkpoint.origin)
    return SealedLog(log, checkpoint, verified, dict(files), fetched_at)


def reconcile(held: SealedLog | None, new: SealedLog) -> tuple[SealedLog, str | None]:
    """Which state the host keeps, and a note saying why when it is not the carried one.

    Raises LogForkError when the two states cannot both be the log's history: another name
    under the same key, any shared tile hash that differs (`tiles.first_disagreement`), two
    roots for one size, or a root the other side's tiles recompute differently. Otherwise a
    held state is replaced only by a larger tree whose tiles recompute the held root (TUF's
    no-rollback rule, applied to log state: RFC 9162 §2.1.4's consistency, proven here by
    recomputing the older root from the newer tree's hashes); an older tree, or a larger one
    whose tiles cannot prove it extends the held one, leaves the held state in place with a
    note — never a refusal: an old or shallow log state must not block a TUF update (decision 16).
    """
    if held is None:
        return new, None
    name = held.name
    old_size, new_size = held.checkpoint.size, new.checkpoint.size
    if new.checkpoint.origin != name:
        raise _fork(held, new, f"the carried checkpoint names the log {new.checkpoint.origin!r}")
    disagreement = first_disagreement(held.tiles, new.tiles)
    if disagreement is not None:
        raise _fork(held, new, f"they disagree at {disagreement}")
    if new_size == old_size:
        if new.checkpoint.root_hash != held.checkpoint.root_hash:
            raise _fork(held, new, "two roots for one tree size")
        return (new if new.depth > held.depth else held), None
    if new_size < old_size:
        computed = root_at(held.tiles, new_size)
        if computed is not None and computed != new.checkpoint.root_hash:
            raise _fork(held, new, f"the held tiles give root {computed.hex()} for tree size {new_size}")
        checked = (
            "consistent with it" if computed is not None else "not checked: the held tiles do not reach it"
        )
        return held, (
            f"{name}: the carried log state (tree size {new_size}) is older than the held one "
            f"(tree size {old_size}; {checked}); kept the held state"
        )
    computed = root_at(new.tiles, old_size)
    if computed is None:
        needed = new_size - old_size // TILE_WIDTH * TILE_WIDTH
        return held, (
            f"{name}: the carried log state (tree size {new_size}) cannot be proven to extend the "
            f"held one (tree size {old_size}): its tiles do not reach the held root; kept the held "
            f"state (export with --depth {needed} or more to carry the proof)"
        )
    if computed != held.checkpoint.root_hash:
        raise _fork(
            held, new, f"the carried tiles give root {computed.hex()} for the held tree size {old_size}"
        )
    return new, None


def _fork(held: SealedLog, new: SealedLog, how: str) -> LogForkError:
    return fork_error(held, new.checkpoint.root_hash, new.checkpoint.size, how)


def fork_error(held: SealedLog, root: bytes, size: int, how: str, *, other: str = "carried") -> LogForkError:
    """The one "forked history" refusal, naming both roots: the held state's and the `other`
    tree's (a carried state on import, a bundle's signed checkpoint at `trust verify`)."""
    return LogForkError(
        held.name,
        f"forked history: held root {held.checkpoint.root_hash.hex()} (tree size {held.checkpoint.size}) "
        f"and {other} root {root.hex()} (tree size {size}): {how}",
        held_root=held.checkpoint.root_hash,
        carried_root=root,
    )


# ---- on the host -------------------------------------------------------------------------------


MAX_RECORD_BYTES = 4096  # {"fetched_at": ...}
SEALED_FILE_MODE = 0o640  # readers' group, like the rest of the cache (decision 17)


def _read_held(path: Path, directory: Path, limit: int) -> bytes:
    """One held file by the one rule for the cache; anything else is a cache edited on disk."""
    try:
        return read_untrusted(path, limit, f"sealed log state {directory.name}: {path.name}")
    except UnsafeFileError as exc:
        raise CacheVerificationError(exc.message) from None


def read_state_dir(directory: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files of one log state directory (bounded in count and bytes; no links) and its
    unsigned record."""
    files: dict[str, bytes] = {}
    total = 0
    record: dict[str, Any] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise CacheVerificationError(f"sealed log state {directory.name}: {path.name} is a link")
        if not path.is_file():
            continue
        name = path.relative_to(directory).as_posix()
        if name == RECORD:
            try:
                loaded = json.loads(_read_held(path, directory, MAX_RECORD_BYTES))
            except ValueError:
                loaded = {}
            record = loaded if isinstance(loaded, dict) else {}
            continue
        if name != CHECKPOINT:
            try:
                parse_tile_path(name)
            except TransparencyLogError as exc:
                raise CacheVerificationError(f"sealed log state {directory.name}: {exc.message}") from None
        if len(files) > MAX_TILES:
            raise CacheVerificationError(f"sealed log state {directory.name}: more than {MAX_TILES} files")
        data = _read_held(path, directory, MAX_LOG_BYTES - total)  # refused past the total bound
        total += len(data)
        files[name] = data
    return files, record


def read_sealed(
    state_dir: Path, logs: Iterable[TransparencyLog], *, unusable: dict[str, str] | None = None
) -> dict[str, SealedLog]:
    """Every sealed log state the host holds for a log its verified trust names, re-verified
    now (signature, name and tiles). A state that does not verify is a cache edited on disk:
    CacheVerificationError (exit 3), never a quiet skip — unless the caller passes `unusable`,
    which then receives log ID -> why for each such state, left out (an import replacing
    it: whoever can damage a held state can also delete it, so replacing a damaged one gives
    nothing away). States of logs the trust no longer names are ignored; a log whose URL
    moved keeps its state (it is found by log ID and checked by the name its key binds)."""
    by_id = {log.log_id: log for log in logs if log.kind == "rekor"}
    held: dict[str, SealedLog] = {}
    if not state_dir.is_dir():
        return held
    for directory in sorted(state_dir.iterdir()):
        log = by_id.get(directory.name)
        if log is None or not directory.is_dir() or directory.is_symlink():
            continue
        try:
            files, record = read_state_dir(directory)
            fetched = record.get("fetched_at")
            held[log.log_id] = verify_log_state(
                log,
                files,
                fetched if isinstance(fetched, str) else None,
                pinned=own_origin(files.get(CHECKPOINT)),  # only for a log the trust binds no name to
            )
        except (TransparencyLogError, CacheVerificationError) as exc:
            problem = f"sealed log state {directory} does not verify: {exc.message}"
            if unusable is None:
                raise CacheVerificationError(
                    problem,
                    hint=f"the cache was edited on disk: import a bundle exported with --depth (it "
                    f"replaces this log state), or remove {directory} to drop it",
                ) from None
            unusable[log.log_id] = problem
    return held


def write_sealed(state_dir: Path, sealed: SealedLog) -> None:
    """Replace the host's state for one log whole: written under a temporary name, fsynced,
    then renamed into place (a reader sees the old state or the new one)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{sealed.log_id[:16]}.", dir=state_dir))
    try:
        for name, data in sealed.files.items():
            path = staging.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with create_exclusive(path, SEALED_FILE_MODE) as handle:  # never through a planted name
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        with create_exclusive(staging / RECORD, SEALED_FILE_MODE) as handle:
            handle.write(json.dumps({"fetched_at": sealed.fetched_at}).encode())
        final = state_dir / sealed.log_id
        if final.exists():
            old = state_dir / f".{sealed.log_id[:16]}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def accept_carried(
    carried_dir: Path, logs: Iterable[TransparencyLog], held_dir: Path, fetched: Mapping[str, str | None]
) -> tuple[list[SealedLog], list[SealedLog], list[str]]:
    """Verify the log states a bundle carried (`carried_dir/<log id>/...`) with the keys of
    the trust being imported, and reconcile each with the host's held state.

    Returns (every carried state, the states to write, notes). A state that does not verify
    (signature, name, tiles), or names a log the trust does not hold, raises
    TransparencyLogError: the bundle is damaged or forged and the caller refuses the whole
    import. A genuine state that is older, or cannot be proven to extend the held one, is a
    note (the held state stays, the TUF trust is imported). A fork is refused for
    that log alone — the carried state is not written, the held one stays — and reported as a
    note that starts "forked history": it is evidence against the log, not against the TUF
    trust, which may be the very update that retires that log (decision 15)."""
    if not carried_dir.is_dir():
        return [], [], []
    by_id = {log.log_id: log for log in logs if log.kind == "rekor"}
    notes: list[str] = []
    damaged: dict[str, str] = {}
    held = read_sealed(held_dir, by_id.values(), unusable=damaged)
    carried: list[SealedLog] = []
    write: list[SealedLog] = []
    for directory in sorted(carried_dir.iterdir()):
        log = by_id.get(directory.name)
        if log is None:
            raise TransparencyLogError(
                f"tlogs/{directory.name[:64]}", "state of a log this host's trust does not name"
            )
        try:
            files, _ = read_state_dir(directory)
        except CacheVerificationError as exc:
            raise TransparencyLogError(f"tlogs/{directory.name}", exc.message) from None
        mine = held.get(log.log_id)
        if log.log_id in damaged:
            notes.append(f"{damaged[log.log_id]}; replaced by the carried one")
        # a log the trust binds no name to: the carried name is compared with the held one below
        pinned = own_origin(files.get(CHECKPOINT)) if mine is not None else None
        sealed = verify_log_state(log, files, fetched.get(log.log_id), pinned=pinned)
        carried.append(sealed)
        try:
            kept, note = reconcile(mine, sealed)
        except LogForkError as exc:
            notes.append(f"{exc.message}; the carried log state was refused and the held one kept")
            continue
        if note:
            notes.append(note)
        if kept is sealed:
            write.append(sealed)
    return carried, write, notes
