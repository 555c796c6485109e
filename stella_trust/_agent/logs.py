"""Agent logging: journald-friendly under systemd, JSON for log shippers, plain otherwise.

Under systemd (JOURNAL_STREAM or INVOCATION_ID set) each line starts with the syslog
priority, `<4>`-style, and carries no timestamp: journald adds its own and maps the
prefix to the entry's priority. `--log-format json` gives one object per line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time

from stella_trust._internal.redact import redact

LOGGER = "stella_trust"
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def under_systemd(environ: dict[str, str] | None = None) -> bool:
    """True when stderr goes to journald, which adds its own timestamps and wants priorities."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


class JournalFormatter(logging.Formatter):
    """`<priority>message`: journald maps the prefix, so `journalctl -p warning` works."""

    def format(self, record: logging.LogRecord) -> str:
        """The message behind its syslog priority, with no timestamp: journald adds its own."""
        return f"<{PRIORITY.get(record.levelno, 6)}>{record.getMessage()}"


class JsonFormatter(logging.Formatter):
    """One object per line for log shippers, which should not have to parse free text."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object: time (UTC, milliseconds), level, message, and any structured
        `fields` the caller attached, keys sorted so lines diff cleanly."""
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, sort_keys=True)


# Hidden scratch names in the cache carry a random or time-based part (`.work-<ns>-<hex>`,
# `.state.json.<hex>.tmp`, `.current.<hex>`): two reports of the same fault differ only there.
_SCRATCH_NAME = re.compile(r"(?<=/)\.[^/\s'\"()]+")


def error_key(message: str) -> str:
    """What makes two failure messages "the same error" for log-once purposes.

    A full disk or a read-only cache fails on a differently named scratch file every
    cycle; comparing raw messages would log it every cycle, which is the flood the
    log-once rule exists to prevent.
    """
    return _SCRATCH_NAME.sub(".*", message)


class RepeatFilter(logging.Filter):
    """Lets a warning or error from the core (not the agent's own logger) through once until
    the next successful refresh; repeats drop to debug.

    The core logs best-effort problems as they happen (e.g. "could not record the failure"
    on a full disk); in a loop that retries every few seconds that would be one line per
    retry. The agent's own lines already follow the log-once rule and pass untouched.
    """

    def __init__(self, own_logger: str = LOGGER) -> None:
        super().__init__()
        self.own_logger = own_logger
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """A library's warnings and errors pass once per distinct message (its lower levels
        pass); the agent's own lines always pass, being deduplicated where they are logged."""
        if record.name == self.own_logger or record.levelno < logging.WARNING:
            return True
        key = (record.name, error_key(record.getMessage()))
        with self._lock:
            if key not in self._seen:
                self._seen.add(key)
                return True
        if not logging.getLogger(self.own_logger).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True

    def reset(self) -> None:
        """A refresh succeeded: the next occurrence of any problem is news again."""
        with self._lock:
            self._seen.clear()


REPEATS = RepeatFilter()


class RedactFilter(logging.Filter):
    """Credentials in a mirror URL never reach a log line (decision 18): the message is
    formatted here once, with every URL's userinfo and secret query values replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True: the record is rewritten, never dropped."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def configure(log_format: str = "auto", level: int = logging.INFO) -> logging.Logger:
    """Set up the `stella_trust` logger on stderr; `auto` picks journal under systemd."""
    if log_format == "auto":
        log_format = "journal" if under_systemd() else "text"
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter()
    elif log_format == "journal":
        formatter = JournalFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RedactFilter())
    handler.addFilter(REPEATS)
    logger = logging.getLogger(LOGGER)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger
