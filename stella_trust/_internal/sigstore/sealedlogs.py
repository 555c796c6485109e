"""Sealed transparency-log state: a tile log's checkpoint and tiles, carried to a host (issue 14).

A host holds the log *keys* from its verified trust; a sealed log state lets it also check
that the log a bundle was entered in is the log everyone saw. For each tile-based log
(Rekor v2, C2SP tlog-tiles) a bundle may carry its checkpoint (a C2SP signed note) and the
tiles covering the last N entries and the tree's right edge. Nothing here is believed
because a file says so: every use re-checks the checkpoint's signature with the log key
from the *verified* trust (origin = the log base URL's host[:port]) and recomputes the
checkpoint's root from the tiles (RFC 6962, tiles.py).

On the host the state lives beside the generations, `<cache>/tlogs/<log id>/` (checkpoint,
tile/..., sealed.json), replaced whole by a rename; a log state never moves backwards
(`reconcile`): a smaller tree is accepted only if the held tiles prove it consistent (and
then the held, larger state stays), an equal size must have the same root, a larger tree
must give the held root for the held size when its tiles can tell.
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

from stella_trust._internal.sigstore.signednote import Checkpoint, verify_checkpoint
from stella_trust._internal.sigstore.tiles import (
    MAX_TILES,
    VerifiedTiles,
    check_root,
    covered_depth,
    parse_tile_path,
    verify_tiles,
)
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust.errors import CacheVerificationError
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
        return self.log.log_id

    @property
    def depth(self) -> int:
        """How many of the last entries the sealed tiles cover (their leaves and entries)."""
        return covered_depth(self.tiles)

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
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
    """The checkpoint origin a log signs: its base URL's host, with the port when it has one
    (issue 14; Rekor v2 signs `log2025-1.rekor.sigstore.dev`)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def tile_logs(logs: Iterable[TransparencyLog], now: datetime) -> list[TransparencyLog]:
    """The active tile-based logs: Rekor v2 (from the signing config or its Ed25519 key)."""
    return [log for log in logs if log.kind == "rekor" and log.rekor_version == 2 and log.active(now)]


def log_key_der(log: TransparencyLog) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    key = load_pem_public_key(log.public_key_pem.encode())
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def verify_log_state(
    log: TransparencyLog, files: Mapping[str, bytes], fetched_at: str | None = None
) -> SealedLog:
    """The checkpoint signed by `log`'s key (origin from its base URL), then every tile tied
    to the checkpoint's root. Raises TransparencyLogError naming the log and what failed."""
    name = origin_of(log.base_url)
    data = files.get(CHECKPOINT)
    if data is None:
        raise TransparencyLogError(name, "no checkpoint in the sealed log state")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise TransparencyLogError(name, f"checkpoint is {len(data)} bytes, above {MAX_CHECKPOINT_BYTES}")
    checkpoint = verify_checkpoint(data, origin=name, public_key=log_key_der(log), where=f"{name} checkpoint")
    tiles = {path: blob for path, blob in files.items() if path != CHECKPOINT}
    verified = verify_tiles(tiles, checkpoint.size, checkpoint.root_hash, log=name)
    return SealedLog(log, checkpoint, verified, dict(files), fetched_at)


def reconcile(held: SealedLog | None, new: SealedLog) -> tuple[SealedLog, str | None]:
    """Which state the host keeps, and a note; raises when `new` would roll the log back or
    shows another history (TUF's no-rollback rule, applied to log state, issue 14)."""
    name = origin_of(new.log.base_url)
    if held is None:
        return new, None
    old_size, new_size = held.checkpoint.size, new.checkpoint.size
    if new_size == old_size:
        if new.checkpoint.root_hash != held.checkpoint.root_hash:
            raise TransparencyLogError(
                name, f"two different roots for tree size {new_size}: the log shows another history"
            )
        return (new if new.depth >= held.depth else held), None
    if new_size < old_size:
        if not check_root(held.tiles, new_size, new.checkpoint.root_hash, what=f"{name} checkpoint"):
            raise TransparencyLogError(
                name,
                f"checkpoint of tree size {new_size} is older than the held {old_size} and the held "
                "tiles cannot prove it consistent (log state rollback)",
            )
        return held, f"{name}: bundle's tree size {new_size} is older than the held {old_size}; kept the held"
    if check_root(new.tiles, old_size, held.checkpoint.root_hash, what=f"{name} held checkpoint"):
        return new, None
    return new, (
        f"{name}: grew from {old_size} to {new_size}; consistency with the held tree not provable "
        "from the carried tiles (carry more with --depth)"
    )


# ---- on the host -------------------------------------------------------------------------------


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
                loaded = json.loads(path.read_bytes())
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
        data = path.read_bytes()
        total += len(data)
        if total > MAX_LOG_BYTES:
            raise CacheVerificationError(f"sealed log state {directory.name}: above {MAX_LOG_BYTES} bytes")
        files[name] = data
    return files, record


def read_sealed(state_dir: Path, logs: Iterable[TransparencyLog]) -> dict[str, SealedLog]:
    """Every sealed log state the host holds for a log its verified trust names, re-verified
    now (signature and tiles). A state that does not verify is a cache edited on disk:
    CacheVerificationError (exit 3), never a quiet skip. States of logs the trust no longer
    names are ignored."""
    by_id = {log.log_id: log for log in logs if log.kind == "rekor"}
    held: dict[str, SealedLog] = {}
    if not state_dir.is_dir():
        return held
    for directory in sorted(state_dir.iterdir()):
        log = by_id.get(directory.name)
        if log is None or not directory.is_dir() or directory.is_symlink():
            continue
        files, record = read_state_dir(directory)
        try:
            fetched = record.get("fetched_at")
            held[log.log_id] = verify_log_state(log, files, fetched if isinstance(fetched, str) else None)
        except TransparencyLogError as exc:
            raise CacheVerificationError(
                f"sealed log state of {origin_of(log.base_url)} does not verify: {exc.message}",
                hint="the cache was edited on disk; import a bundle with --depth again",
            ) from None
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
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        (staging / RECORD).write_text(json.dumps({"fetched_at": sealed.fetched_at}))
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

    Returns (every carried state, the states to write, notes). Raises TransparencyLogError
    for anything that does not verify or would roll a log back: the caller refuses the
    whole import."""
    if not carried_dir.is_dir():
        return [], [], []
    by_id = {log.log_id: log for log in logs if log.kind == "rekor"}
    held = read_sealed(held_dir, by_id.values())
    carried: list[SealedLog] = []
    write: list[SealedLog] = []
    notes: list[str] = []
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
        sealed = verify_log_state(log, files, fetched.get(log.log_id))
        carried.append(sealed)
        kept, note = reconcile(held.get(log.log_id), sealed)
        if note:
            notes.append(note)
        if kept is sealed:
            write.append(sealed)
    return carried, write, notes
