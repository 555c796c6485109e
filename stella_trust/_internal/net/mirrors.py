"""One repository fetched through several base URLs: failover per request, restart per sync.

A repository's identity is its `tuf_url`; `mirrors` are base URLs serving the same files,
tried in order before it (a site relay first, the origin last). Nothing a mirror serves is
trusted for being served: python-tuf verifies every file from the host's anchor (TUF spec
5.3-5.7), so a mirror can withhold or delay, never forge. Failing over is therefore only a
question of availability, decided at two levels:

**Per request** (`MirrorFetcher`). python-tuf asks for URLs under `tuf_url`; each is sent to
the *active* mirror, and a request that gets no answer from it (connection refused or reset,
a timeout or the request's deadline before the headers, HTTP 5xx, 408 or 429, a response the
fetcher refuses before its body such as a content coding) is sent again to the next mirror,
which stays active for the rest of the attempt (one slow mirror costs one deadline per sync,
not one per file, and every file of an attempt comes from as few mirrors as possible). An
HTTP 404 or 403 is an *answer*, never a failover: it is how a well-formed repository says
"no root N+1" (spec 5.3.3: the walk ends at the newest root), and a mirror lagging behind the
origin that ends the walk early serves an older but validly signed state, which TUF accepts
until it expires (a freeze is bounded by the timestamp's expiry, decision 3). A 404 anywhere
else (timestamp, a versioned snapshot, a target) makes python-tuf fail the step, which is
the second level's business.

**Per sync** (`MirrorRun`). Any failure of a TUF step (5.3 root, 5.4 timestamp, 5.5 snapshot,
5.6 targets, 5.7 target files) that is the repository's fault: a refused signature, a version
below the one held (rollback), a fork, a hash or length mismatch, expired or malformed
metadata, a missing file, a body cut off or stalled past the deadline. The sync discards its
working copy (python-tuf writes a file only after it verified it, and the copy is discarded
anyway, so the cache never holds bytes from a refused attempt) and starts again from the
held trust against the next mirror after the one that was active. Restarting the whole
refresh, rather than retrying the failed file elsewhere, keeps each attempt one consistent
TUF walk: a timestamp from one mirror is never combined with a snapshot from another that
lags behind it. Each mirror is tried at most once per sync; when none is left, the sync fails
with one line naming every mirror's reason, and the held trust stays served (decision 16).

**Health** (`MirrorHealth` in state.json): per mirror, the last sync it served without a
failure, and its last failure with the time; URLs redacted (decision 18). Shown by
`trust status` and the agent's metrics.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from tuf.api import exceptions as tuf_exceptions

from stella_trust import errors
from stella_trust._internal.cachestate import MirrorHealth
from stella_trust._internal.net.fetcher import CountingFetcher, ProgressHook
from stella_trust._internal.redact import redact
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.timefmt import iso

# Statuses that mean "this server cannot answer now", not "this file does not exist".
RETRY_STATUSES = frozenset({408, 429})


def unanswered(exc: tuf_exceptions.DownloadError) -> bool:
    """A request the mirror did not answer (fail over to the next), as opposed to an answer: 404
    and 403 (python-tuf's "no newer root"), or any other 4xx (the file's fate on that server)."""
    if isinstance(exc.__cause__, errors.StellaError):  # a stop request or our own refusal
        return False
    if isinstance(exc, tuf_exceptions.DownloadHTTPError):
        return exc.status_code >= 500 or exc.status_code in RETRY_STATUSES
    return True  # connection errors, timeouts, the deadline, a refused response


@dataclass
class _Record:
    """What one mirror did during one sync: requests it answered, and its last failure."""

    answered: int = 0
    failure: str | None = None


class MirrorFetcher(CountingFetcher):
    """python-tuf's fetcher for one attempt of a sync: URLs under `origin` go to the active
    mirror, failing over per request (module docstring). The transport is `inner` (the sync's
    HttpxFetcher, or an in-memory one in tests), shared by every attempt: its request and byte
    counts, the URLs actually fetched, the server clock and the progress hook are its own; the
    URLs python-tuf asked for and the bodies it took (decision 14) are this attempt's, under
    `origin`, as python-tuf named them."""

    def __init__(self, run: MirrorRun, start: int) -> None:
        """Attempt from mirror `start` on; nothing is fetched here."""
        self._run = run
        self._inner = run.inner
        self.attempted: list[str] = []
        self.delivered: list[tuple[str, bytes]] = []
        self.active = start

    # The transport's accounting (the sync reports the total of every attempt).
    @property
    def requests(self) -> int:
        """Requests sent, every attempt and mirror included."""
        return self._inner.requests

    @requests.setter
    def requests(self, value: int) -> None:
        self._inner.requests = value

    @property
    def bytes_received(self) -> int:
        """Bytes received, every attempt and mirror included."""
        return self._inner.bytes_received

    @bytes_received.setter
    def bytes_received(self, value: int) -> None:
        self._inner.bytes_received = value

    @property
    def urls(self) -> list[str]:
        """The URLs actually requested (mirrors' URLs, not the origin's)."""
        return self._inner.urls

    @urls.setter
    def urls(self, value: list[str]) -> None:
        self._inner.urls = value

    @property
    def server_clock(self) -> tuple[float, str] | None:
        """The last response's Date header, whichever mirror sent it."""
        return self._inner.server_clock

    @server_clock.setter
    def server_clock(self, value: tuple[float, str] | None) -> None:
        self._inner.server_clock = value

    @property
    def progress(self) -> ProgressHook | None:
        """The transport's progress hook (display only)."""
        return self._inner.progress

    @progress.setter
    def progress(self, value: ProgressHook | None) -> None:
        self._inner.progress = value

    @property
    def base(self) -> str:
        """The active mirror's base URL."""
        return self._run.bases[self.active]

    def close(self) -> None:
        """Close the transport's connections (a later attempt opens new ones)."""
        self._inner.close()

    def _fetch(self, url: str) -> Iterator[bytes]:
        """Send `url`, rebased on the active mirror; on no answer, the next mirror becomes active
        and gets the same request. The last mirror's failure is python-tuf's to handle."""
        origin = self._run.origin + "/"
        if not url.startswith(origin):
            return self._inner.fetch(url)  # not a repository file: no mirror serves it
        suffix = url[len(origin) :]
        while True:
            index = self.active
            try:
                chunks = self._inner.fetch(self._run.bases[index] + "/" + suffix)
            except tuf_exceptions.DownloadError as exc:
                if not unanswered(exc):
                    self._run.answered(index)
                    raise
                self._run.failed(index, str(exc))
                if index + 1 >= len(self._run.bases):
                    raise
                self.active = index + 1
                continue
            self._run.answered(index)
            return self._watched(chunks, index)

    def _watched(self, chunks: Iterator[bytes], index: int) -> Iterator[bytes]:
        """The body as the transport yields it; a failure while it is read (a reset, the deadline)
        is recorded against its mirror before python-tuf sees it (the sync then restarts)."""
        try:
            yield from chunks
        except tuf_exceptions.DownloadError as exc:
            if unanswered(exc):
                self._run.failed(index, str(exc))
            raise


@dataclass
class MirrorRun:
    """One sync's walk over the mirrors: its attempts and what each mirror did (module docstring).
    `origin` is the repository's identity (`tuf_url`), the prefix python-tuf's URLs carry."""

    origin: str
    bases: tuple[str, ...]
    inner: CountingFetcher
    records: list[_Record] = field(default_factory=list)
    served_by: int | None = None  # the attempt that succeeded started here

    def __post_init__(self) -> None:
        """One record per mirror."""
        self.records = [_Record() for _ in self.bases]

    @classmethod
    def of(cls, settings: TrustRepoSettings, inner: CountingFetcher) -> MirrorRun:
        """The run over the settings' mirrors, sending through `inner`."""
        assert settings.tuf_url is not None
        return cls(settings.tuf_url, settings.repository_bases, inner)

    @property
    def several(self) -> bool:
        """More than one base URL: without mirrors a sync behaves, and words its errors, as ever."""
        return len(self.bases) > 1

    def attempts(self) -> Iterator[MirrorFetcher]:
        """One fetcher per attempt, each starting after the mirror the previous one ended on; the
        caller stops iterating when an attempt succeeds or must not be repeated."""
        start = 0
        while start < len(self.bases):
            fetcher = MirrorFetcher(self, start)
            yield fetcher
            start = fetcher.active + 1

    def answered(self, index: int) -> None:
        """Mirror `index` answered a request (an HTTP error that is an answer included)."""
        self.records[index].answered += 1

    def failed(self, index: int, reason: str) -> None:
        """Mirror `index` did not answer, or what it served was refused: `reason` in one line."""
        self.records[index].failure = " ".join(redact(reason).split())

    def attempt_failed(self, fetcher: MirrorFetcher, failure: errors.StellaError) -> None:
        """The attempt ended on `fetcher.active` with `failure` (the repository's fault)."""
        reason = failure.message.removesuffix(f" ({fetcher.base})")  # the mirror is named beside it
        self.failed(fetcher.active, reason)

    def succeeded(self, fetcher: MirrorFetcher) -> None:
        """The attempt that ended on `fetcher.active` was committed (or found idle)."""
        self.served_by = fetcher.active

    def more_after(self, fetcher: MirrorFetcher) -> bool:
        """Whether a mirror after the one this attempt ended on is left to try."""
        return fetcher.active + 1 < len(self.bases)

    def exhausted(self, failure: errors.StellaError) -> errors.StellaError:
        """The one-line error when every mirror was tried: each mirror's reason, in order; the
        last failure's kind (and exit code) is kept, so its host-specific hint still applies."""
        reasons = "; ".join(
            f"{redact(self.bases[i])}: {record.failure}"
            for i, record in enumerate(self.records)
            if record.failure is not None
        )
        final = copy.copy(failure)
        final.message = f"every mirror failed ({len(self.bases)} tried in order): {reasons}"
        final.args = (final.message,)
        final.hint = f"`trust status` shows each mirror's last error; {failure.hint}".rstrip("; ")
        final.connected_hint = None
        return final

    def health(self, previous: list[MirrorHealth], now: datetime) -> list[MirrorHealth]:
        """Every configured mirror's health after this sync, in order: a mirror that failed now has
        this failure as its last error, one that answered without failing in the attempt that
        succeeded has this sync as its last success, and one not tried keeps its record."""
        held = {entry.url: entry for entry in previous}
        stamp = iso(now)
        result = []
        for index, base in enumerate(self.bases):
            url = redact(base)
            before = held.get(url)
            entry = MirrorHealth(url) if before is None else copy.copy(before)
            record = self.records[index]
            if record.failure is not None:
                entry.last_error, entry.last_error_at = record.failure, stamp
            elif record.answered and self.served_by is not None and index >= self.served_by:
                entry.last_success = stamp
            result.append(entry)
        return result

    def summary(self) -> tuple[dict[str, object], ...]:
        """This sync per mirror, for `trust sync --json`: requests answered and the failure, if any."""
        return tuple(
            {"url": redact(base), "requests": record.answered, "error": record.failure}
            for base, record in zip(self.bases, self.records, strict=True)
        )
