"""Prometheus text-format metrics for node_exporter's textfile collector.

Written atomically (temp file + rename in the same directory) because the collector may
read at any moment; a half-written file would be scraped as garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
        metric(
            "notify_dropped_total",
            "counter",
            "sd_notify messages dropped because systemd was not reading NOTIFY_SOCKET.",
            [("", float(self.notify_dropped))],
        )
        return "\n".join(lines) + "\n"


def write_metrics(path: Path, metrics: AgentMetrics) -> None:
    """Atomically (node_exporter must never read half a file); not fsynced: rewritten each cycle."""
    atomic_write(path, metrics.render().encode(), mode=0o644, durable=False)
