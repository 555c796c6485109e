"""`trust doctor`'s checks that ask the repository: it answers, and this host's clock agrees
with its HTTP Date header."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib import parse
from urllib.request import url2pathname

from stella_trust._internal.diagnose.result import Check, fail, ok, warn
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.timefmt import human_duration
from stella_trust._version import __version__

PROBE_SECONDS = 5.0
CLOCK_WARN = timedelta(minutes=5)
CLOCK_FAIL = timedelta(hours=1)
CLOCK_HINT = (
    "TUF expiry checks read this clock: a clock ahead makes valid metadata look expired (and "
    "trust turn stale early), a clock behind accepts metadata that has expired; synchronise "
    "it (NTP: `timedatectl set-ntp true`, chrony)"
)

# ---- the repository and the clock -------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One GET of `<tuf_url>/metadata/timestamp.json`, headers only."""

    url: str
    status: int | None = None
    server_date: datetime | None = None
    local_time: datetime | None = None  # the middle of the request, by this host's clock
    seconds: float = 0.0
    error: str | None = None


def probe_repository(settings: TrustRepoSettings, timeout: float = PROBE_SECONDS) -> Probe:
    """GET the timestamp role's URL through the very fetcher a sync uses (its proxies, CA
    bundle, identity encoding and whole-request deadline, here `timeout`): doctor tests what
    sync does. Never raises."""
    from tuf.api import exceptions as tuf_exceptions

    from stella_trust._internal.net.fetcher import HttpxFetcher
    from stella_trust._internal.tuf.errors import translate

    assert settings.tuf_url is not None
    url = f"{settings.tuf_url}/metadata/timestamp.json"
    clock = time.monotonic()
    status: int | None = None
    error: str | None = None
    agent = f"stella-trust/{__version__} (doctor)"
    with HttpxFetcher(
        timeout=timeout, deadline=timeout, ca_bundle=settings.ca_bundle, user_agent=agent
    ) as fetcher:
        try:
            fetcher.download_bytes(url, settings.metadata_limits.timestamp)
            status = 200
        except tuf_exceptions.DownloadHTTPError as exc:
            status = exc.status_code
        except Exception as exc:  # a transport failure, in the words a sync would use
            error = translate(exc, url).message
        seen = fetcher.server_clock
    elapsed = time.monotonic() - clock
    if status is None:
        return Probe(url, error=error or "no answer", seconds=elapsed)
    local = datetime.fromtimestamp(seen[0], UTC) if seen else None
    return Probe(url, status, _http_date(seen[1]) if seen else None, local, elapsed)


def _http_date(value: str | None) -> datetime | None:
    """The server's HTTP Date header (RFC 9110, section 5.6.7: always GMT, so a date given without
    a zone is UTC); None when absent or unparseable, and the clock check then says it could not
    compare."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_repository(settings: TrustRepoSettings) -> tuple[Check, Probe | None]:
    """The repository answers where a sync would ask (skipped offline and without a URL)."""
    url = settings.tuf_url
    if url is None:
        return ok("repository", "no tuf_url: this host takes trust from bundles, not contacted"), None
    if not settings.network_allowed:
        return ok("repository", "offline mode, not contacted"), None
    if url.startswith("file:"):
        path = Path(url2pathname(parse.urlsplit(url).path)) / "metadata" / "timestamp.json"
        if path.is_file() and os.access(path, os.R_OK):
            return ok("repository", f"{path} is readable"), None
        return (
            fail(
                "repository",
                f"{path} is missing or unreadable",
                "mount the medium or fix tuf_url; cached trust is unchanged",
            ),
            None,
        )
    probe = probe_repository(settings, min(PROBE_SECONDS, settings.request_timeout_seconds))
    hint = "check tuf_url, the network path and any proxy (HTTPS_PROXY / NO_PROXY); cached trust is unchanged"
    if probe.error is not None:
        return fail("repository", f"{probe.url}: {probe.error}", hint), None
    if probe.status != 200:
        return fail("repository", f"{probe.url}: HTTP {probe.status}", hint), probe
    return ok("repository", f"{probe.url}: HTTP 200 in {probe.seconds * 1000:.0f} ms"), probe


def check_clock(settings: TrustRepoSettings, probe: Probe | None) -> Check | None:
    """This host's clock against the repository's (its HTTP `Date` header); None when the
    repository was not asked or did not answer (that check already says why)."""
    if settings.tuf_url is None:
        return ok("clock", "no tuf_url: not compared with a repository")
    if not settings.network_allowed:
        return ok("clock", "offline mode: not compared with a repository")
    if settings.tuf_url.startswith("file:"):
        return ok("clock", "file:// repository: no server clock to compare with")
    if probe is None or probe.status is None or probe.local_time is None:
        return None
    if probe.server_date is None:
        return warn(
            "clock",
            "the repository sent no usable Date header: clock not compared",
            "check this host's clock against a reference (`timedatectl`, `chronyc tracking`)",
        )
    skew = probe.local_time - probe.server_date
    size = abs(skew)
    # the Date header has a resolution of one second
    direction = "ahead of" if skew > timedelta(0) else "behind"
    if size <= timedelta(seconds=2):
        return ok("clock", "agrees with the repository's Date header (within 2 s)")
    # whole minutes past a minute: a second either way is the Date header's resolution, not news
    shown = timedelta(seconds=round(size.total_seconds() / 60) * 60) if size > timedelta(minutes=1) else size
    detail = f"{human_duration(shown)} {direction} the repository's Date header"
    if size > CLOCK_FAIL:
        return fail("clock", f"{detail} (more than {human_duration(CLOCK_FAIL)})", CLOCK_HINT)
    if size > CLOCK_WARN:
        return warn("clock", f"{detail} (more than {human_duration(CLOCK_WARN)})", CLOCK_HINT)
    return ok("clock", detail)
