"""python-tuf and OS failures in the words users search for, each with a hint."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from tuf.api import exceptions as tuf_exceptions
from tuf.api.serialization import DeserializationError

from stella_trust import errors
from stella_trust._internal.timefmt import human_duration


def translate(exc: BaseException, url: str) -> errors.StellaError:
    """python-tuf and OS failures in the words users search for, with a hint."""
    if isinstance(exc, errors.StellaError):
        return exc
    if isinstance(exc.__cause__, errors.StellaError):  # ours, wrapped by python-tuf's fetch()
        return exc.__cause__
    if isinstance(exc, tuf_exceptions.ExpiredMetadataError):
        return errors.MetadataExpiredError(f"TUF metadata expired: {exc}", hint=expired_hint(str(exc)))
    if isinstance(exc, tuf_exceptions.UnsignedMetadataError):
        return errors.SignatureVerificationError(f"Signature verification failed: {exc}")
    if isinstance(exc, tuf_exceptions.BadVersionNumberError):
        return errors.RollbackError(f"Rollback refused: {exc}")
    if isinstance(exc, tuf_exceptions.LengthOrHashMismatchError):
        return errors.TargetMismatchError(f"Length or hash mismatch: {exc}")
    if isinstance(exc, tuf_exceptions.RepositoryError):
        return errors.VerificationError(f"TUF verification failed: {exc}")
    if isinstance(exc, tuf_exceptions.DownloadLengthMismatchError):
        return errors.TargetMismatchError(
            f"Download exceeded its size limit: {exc}",
            hint="an endless or oversized response; raise metadata_limits only if the "
            "repository is known to be that large — cached trust is unchanged",
        )
    if isinstance(exc, tuf_exceptions.DownloadError):
        return errors.RepositoryUnreachableError(f"Repository unreachable: {exc} ({url})")
    if isinstance(exc, DeserializationError):
        return errors.MalformedMetadataError(f"Malformed metadata: {exc}")
    if isinstance(exc, OSError):
        return errors.StellaError(
            f"Cache write failed: {exc}", hint="check free space and permissions on the cache"
        )
    return errors.StellaError(f"Sync failed: {type(exc).__name__}: {exc}")


def expired_hint(message: str) -> str:
    """Who can renew what python-tuf found expired (its messages name the role: "Final
    root.json is expired", "timestamp.json is expired", "New targets is expired"), and the
    other cause of the same refusal: this host's clock."""
    if "root.json" in message:
        who = (
            "the repository's root expired: its root key holders must sign a new one "
            "(`trust repo set-expiry root 365d`, `trust repo sign root`, `trust repo commit`)"
        )
    elif "timestamp.json" in message or "snapshot.json" in message:
        who = (
            "the repository's online roles were not renewed: its operator's timer must run "
            "(`trust repo bump-online`)"
        )
    else:
        who = (
            "the repository's targets metadata expired: its operator must re-sign it "
            "(`trust repo publish --resign targets`)"
        )
    return f"{who}; or this host's clock is wrong (check it: `timedatectl`)"


def clock_skew(server_clock: tuple[float, str] | None) -> timedelta | None:
    """This host's clock minus the repository server's (its HTTP Date header, one-second
    resolution); None when the server sent no usable Date."""
    if server_clock is None:
        return None
    local, header = server_clock
    try:
        server = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if server.tzinfo is None:
        server = server.replace(tzinfo=UTC)
    return datetime.fromtimestamp(local, UTC) - server


CLOCK_TOLERANCE = timedelta(minutes=5)
_STATE_CLAUSE = re.compile(r"\s*[;,—-]*\s*cached trust is unchanged( and usable until it turns stale)?")


def in_host_terms(
    failure: errors.StellaError, holds_trust: bool, server_clock: tuple[float, str] | None
) -> errors.StellaError:
    """A failed sync's message and hint, true for the host it ran on (docs/design.md, host states).

    Expired metadata has two causes a host can tell apart: the repository was not renewed,
    or this host's clock is off. The repository server's HTTP Date header (recorded by the
    fetcher, no extra request) decides: beyond CLOCK_TOLERANCE the clock is named, not the
    operator. The hint then ends with what the host still serves: its held trust, or nothing
    (a fresh host must not be told its cached trust is "unchanged and usable")."""
    if isinstance(failure, errors.MetadataExpiredError):
        skew = clock_skew(server_clock)
        if skew is not None and abs(skew) > CLOCK_TOLERANCE:
            direction = "ahead of" if skew > timedelta(0) else "behind"
            failure = errors.MetadataExpiredError(
                f"{failure.message} by this host's clock, which is {human_duration(abs(skew))} "
                f"{direction} the repository server's",
                hint="fix this host's clock (`timedatectl`, NTP); the repository is not at fault",
            )
    if not isinstance(failure, errors.SyncInterrupted) and failure.hint:
        base = _STATE_CLAUSE.sub("", failure.hint).rstrip(" ;,—")
        if holds_trust:
            clause = errors.HELD_TRUST_UNCHANGED + (
                " and usable until it turns stale" if isinstance(failure, errors.MetadataExpiredError) else ""
            )
        else:
            clause = errors.NO_TRUST_YET
        failure.hint = f"{base}; {clause}" if base else clause
    return failure
