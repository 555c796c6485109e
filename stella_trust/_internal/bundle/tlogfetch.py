"""Fetch a tile log's checkpoint and tiles for `trust snapshot export --depth N`,
so a host across the air gap can check log inclusion offline (decision 15).

For every active tile-based log in the verified trust (Rekor v2), the log's `/checkpoint`
(a C2SP signed note) is fetched and verified with that log's key from the verified trust
and the name that key is bound to (sealedlogs.verify_log_checkpoint, decision 15),
then the tiles covering the last N entries and the tree's right edge (c2sp.org/tlog-tiles,
`tiles.tiles_for`) are fetched and checked to recompute the checkpoint's root before any of
it is sealed. Requests go through the sync's fetcher: its per-request timeout, whole-request
deadline, size limit per file (a hash tile is exactly W*32 bytes) and progress display.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from stella_trust import errors
from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.sigstore.sealedlogs import (
    CHECKPOINT,
    MAX_CHECKPOINT_BYTES,
    MAX_LOG_BYTES,
    SealedLog,
    tile_logs,
    verify_log_checkpoint,
    verify_log_state,
)
from stella_trust._internal.sigstore.tilelayout import MAX_ENTRY_BUNDLE_BYTES, TILE_WIDTH, tiles_for
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust._internal.timefmt import iso
from stella_trust._internal.tuf.errors import translate
from stella_trust._internal.tuf.updater import make_fetcher
from stella_trust.sigstore_types import TransparencyLog
from stella_trust.view import TrustView

Note = Callable[[str], None]


def fetch_log_states(
    settings: TrustRepoSettings,
    view: TrustView,
    depth: int,
    now: datetime,
    note: Note,
    fetcher: HttpxFetcher | None = None,
) -> list[SealedLog]:
    """One verified state per active tile log; Rekor v1 logs are skipped with a note."""
    logs = [log for log in view.sigstore.transparency_logs if log.kind == "rekor" and log.active(now)]
    tiled = tile_logs(logs, now)
    for log in logs:
        if log not in tiled:
            note(f"{log.base_url}: not a tile-based log (Rekor v{log.rekor_version or 1}); no tiles carried")
    if not tiled:
        return []
    settings.require_network("not fetching transparency-log tiles")
    own = fetcher is None
    client = fetcher or make_fetcher(settings)
    try:
        return [_fetch_one(client, log, depth, now) for log in tiled]
    finally:
        if own:
            client.close()


def _fetch_one(fetcher: HttpxFetcher, log: TransparencyLog, depth: int, now: datetime) -> SealedLog:
    base = log.base_url.rstrip("/")
    checkpoint_bytes = _get(fetcher, f"{base}/checkpoint", MAX_CHECKPOINT_BYTES)
    checkpoint = verify_log_checkpoint(log, checkpoint_bytes)  # the name the trust binds, not the URL's
    name = checkpoint.origin
    files = {CHECKPOINT: checkpoint_bytes}
    total = len(checkpoint_bytes)
    for ref in tiles_for(checkpoint.size, min(depth, checkpoint.size)):
        limit = MAX_ENTRY_BUNDLE_BYTES if ref.entries else TILE_WIDTH * 32
        data = _get(fetcher, f"{base}/{ref.path}", limit)
        total += len(data)
        if total > MAX_LOG_BYTES:
            raise TransparencyLogError(name, f"tiles for depth {depth} exceed {MAX_LOG_BYTES} bytes")
        files[ref.path] = data
    return verify_log_state(log, files, iso(now))


def _get(fetcher: HttpxFetcher, url: str, limit: int) -> bytes:
    """One tile or checkpoint, at most `limit` bytes, within the fetcher's deadlines."""
    from tuf.api import exceptions as tuf_exceptions

    try:
        return fetcher.download_bytes(url, limit)
    except tuf_exceptions.DownloadLengthMismatchError:
        raise TransparencyLogError(
            url,
            f"response exceeds the {limit}-byte limit (an endless or oversized tile)",
            hint="the log server sent more than a tile can hold; export again later or without "
            "--depth; nothing was written",
        ) from None
    except Exception as exc:
        failure = translate(exc, url)
        if failure is exc:
            raise
        if isinstance(failure, errors.RepositoryUnreachableError):
            failure = errors.RepositoryUnreachableError(
                f"Transparency log unreachable: {exc}" + ("" if url in str(exc) else f" ({url})"),
                hint="export without --depth, or when the log answers; nothing was written",
            )
        raise failure from exc
