"""Times and durations as users write and read them (`7d`, `36h`, ISO 8601 with `Z`).

Durations come from flags and config (`--within 1e12d`, `--expires timestamp=inf`), so
parsing refuses what `timedelta` cannot hold instead of raising OverflowError later.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Far beyond any signed lifetime, and far below what datetime arithmetic overflows at
# (now + timedelta.max overflows): 100 years.
MAX_DURATION = timedelta(days=36525)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as the metadata and our JSON write it."""
    if moment is None:
        return None
    micro = moment.microsecond
    spec = "seconds" if micro == 0 else "milliseconds" if micro % 1000 == 0 else "microseconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_iso(text: str | None) -> datetime | None:
    """A time `iso` wrote (state.json's informational fields) as an aware datetime; None when absent or
    not a time: an unsigned file's damaged field reads as nothing recorded, never as an error."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch_ns(moment: datetime) -> int:
    """`moment` as a file time (nanoseconds since the epoch), exactly: integer arithmetic on the
    microseconds a datetime holds, so `from_epoch_ns` gives the same moment back (a float
    timestamp would round)."""
    return (moment - _EPOCH) // _MICROSECOND * 1000


def from_epoch_ns(ns: int) -> datetime:
    """A file time as an aware UTC datetime, to the microsecond (what `epoch_ns` wrote)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def utcnow() -> datetime:
    """The wall clock, timezone-aware in UTC: where every `now` defaults from, so freshness is never
    judged against a naive local time."""
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    """`90m`, `36h`, `7d`, `2w` (or plain seconds) -> timedelta; at most 100 years."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 90m, 36h or 7d") from None
    if not math.isfinite(amount):
        raise ValueError(f"{text!r} is not a finite duration")
    if amount < 0:
        raise ValueError(f"{text!r}: a duration cannot be negative")
    seconds = amount * _UNITS[unit]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def compact_duration(delta: timedelta) -> str:
    """A lifetime as written in flags and metadata: `14d`, `18h`, `90m`, `45s`."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_duration(delta: timedelta) -> str:
    """`3 days`, `1 day 6 hours`, `2 hours`, `45 minutes`: two units at most, as people say it."""
    seconds = abs(int(delta.total_seconds()))
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0 seconds"


def expiry_phrase(expires: datetime, now: datetime) -> str:
    """`expires in 3 days` / `expired 2 hours ago`."""
    left = expires - now
    if left.total_seconds() > 0:
        return f"expires in {human_duration(left)}"
    return f"expired {human_duration(left)} ago"
