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


def utcnow() -> datetime:
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
