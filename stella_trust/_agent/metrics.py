"""Prometheus text-format metrics for node_exporter's textfile collector.

Written atomically (temp file + rename in the same directory) because the collector may
read at any moment; a half-written file would be scraped as garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stella_trust._internal.cachestate import MirrorHealth
from stella_trust._internal.fs import atomic_write

STATES = ("fresh", "grace", "stale", "unusable")


@dataclass
class AgentMetrics:
    """The figures the agent exports, one cycle's worth: an operator alerts on freshness
    and failure streaks without parsing the journal."""

    last_success: float | None = None
    last_attempt: float | None = None
    consecutive_failures: int = 0
    freshness: str = "unusable"
    seconds_until_stale: float | None = None
    sync_duration: float | None = None
    role_versions: dict[str, int] = field(default_factory=dict)
    role_expiries: dict[str, float] = field(default_factory=dict)
    # sd_notify datagrams dropped because systemd was not reading (see notify.py): a
    # growing count explains a watchdog kill or a stale `systemctl status` line.
    notify_dropped: int = 0
    # Pins the repository retired (it no longer lists them): alert and fix the config.
    retired_pins: list[str] = field(default_factory=list)
    # Each configured mirror's recorded health, in the order a sync tries them (redacted URLs).
    mirrors: list[MirrorHealth] = field(default_factory=list)

    def render(self) -> str:
        """The Prometheus text exposition format, one HELP and TYPE line per metric."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP stella_trust_{name} {help_text}")
            lines.append(f"# TYPE stella_trust_{name} {kind}")
            for labels, value in samples:
                lines.append(f"stella_trust_{name}{labels} {float(value)!r}")

        if self.last_success is not None:
            metric(
                "last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last successful refresh.",
                [("", self.last_success)],
            )
        if self.last_attempt is not None:
            metric(
                "last_attempt_timestamp_seconds",
                "gauge",
                "Unix time of the last refresh attempt.",
                [("", self.last_attempt)],
            )
        metric(
            "consecutive_failures",
            "gauge",
            "Refresh failures since the last success.",
            [("", float(self.consecutive_failures))],
        )
        metric(
            "freshness_state",
            "gauge",
            "1 for the current freshness state of cached trust.",
            [(f'{{state="{s}"}}', 1.0 if s == self.freshness else 0.0) for s in STATES],
        )
        if self.seconds_until_stale is not None:
            metric(
                "seconds_until_stale",
                "gauge",
                "Seconds until cached trust turns stale (negative: already stale).",
                [("", self.seconds_until_stale)],
            )
        if self.sync_duration is not None:
            metric(
                "sync_duration_seconds", "gauge", "Duration of the last refresh.", [("", self.sync_duration)]
            )
        if self.role_versions:
            metric(
                "role_version",
                "gauge",
                "Version of each trusted top-level role.",
                [(f'{{role="{r}"}}', float(v)) for r, v in sorted(self.role_versions.items())],
            )
        if self.role_expiries:
            metric(
                "role_expiry_timestamp_seconds",
                "gauge",
                "Signed expiry of each role.",
                [(f'{{role="{r}"}}', v) for r, v in sorted(self.role_expiries.items())],
            )
        if self.retired_pins:
            metric(
                "pinned_target_retired",
                "gauge",
                "A pinned target the repository no longer lists (remove it from pinned_targets).",
                [(f'{{target="{t}"}}', 1) for t in sorted(self.retired_pins)],
            )
        if self.mirrors:
            self._mirror_metrics(metric)
        metric(
            "notify_dropped_total",
            "counter",
            "sd_notify messages dropped because systemd was not reading NOTIFY_SOCKET.",
            [("", float(self.notify_dropped))],
        )
        return "\n".join(lines) + "\n"

    def _mirror_metrics(self, metric: Callable[[str, str, str, list[tuple[str, float]]], None]) -> None:
        """Per mirror (label `mirror`, its redacted URL, and `position` in the order tried): whether
        its latest outcome was a success, and when it last succeeded and last failed."""
        labelled = [
            (f'{{mirror="{_label(m.url)}",position="{i}"}}', m) for i, m in enumerate(self.mirrors, 1)
        ]
        metric(
            "mirror_up",
            "gauge",
            "1 when the mirror's latest outcome was a success, 0 after a failure (absent: never tried).",
            [(labels, 1.0 if m.healthy else 0.0) for labels, m in labelled if m.healthy is not None],
        )
        for name, help_text, attribute in (
            (
                "mirror_last_success_timestamp_seconds",
                "Unix time the mirror last served a sync.",
                "last_success",
            ),
            (
                "mirror_last_error_timestamp_seconds",
                "Unix time of the mirror's last failure.",
                "last_error_at",
            ),
        ):
            samples = []
            for labels, m in labelled:
                moment = _unix_time(getattr(m, attribute))
                if moment is not None:
                    samples.append((labels, moment))
            if samples:
                metric(name, "gauge", help_text, samples)


def _unix_time(text: str | None) -> float | None:
    """An ISO 8601 time from state.json as Unix time; None when absent or not a time (unsigned,
    informational: a bad entry loses its sample, nothing else)."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_metrics(path: Path, metrics: AgentMetrics) -> None:
    """Atomically (node_exporter must never read half a file); not fsynced: rewritten each cycle."""
    atomic_write(path, metrics.render().encode(), mode=0o644, durable=False)
