"""Agent logging: journald-friendly under systemd, JSON for log shippers, plain otherwise.

Under systemd (JOURNAL_STREAM or INVOCATION_ID set) each line starts with the syslog
priority, `<4>`-style, and carries no timestamp: journald adds its own and maps the
prefix to the entry's priority. `--log-format json` gives one object per line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

LOGGER = "stella_trust"
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def under_systemd(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITY.get(record.levelno, 6)}>{record.getMessage()}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, sort_keys=True)


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
    logger = logging.getLogger(LOGGER)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger
