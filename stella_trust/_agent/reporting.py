"""What the agent says about each refresh cycle: the journal, once, and the metrics file.

An agent runs for months: a failure repeated every cycle must not flood the journal, and a
change of state must not be missed. So a failure is logged once per distinct error (repeats
at debug level), the recovery once, freshness only on its transitions, what a sync changed
once per change; the metrics are rewritten every cycle, and a metrics write that fails is
logged once per distinct failure, then once more when it works again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stella_trust._agent.logs import REPEATS, error_key
from stella_trust._agent.metrics import AgentMetrics, write_metrics
from stella_trust._internal.timefmt import iso
from stella_trust.errors import StellaError
from stella_trust.view import FreshnessState, TrustView


class CycleReporter:
    """The log-once bookkeeping of one agent: the failure streak, the error and freshness
    state last logged, and the metrics it exports."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.failures = 0
        self.last_error: str | None = None  # error_key() of the failure last logged
        self.last_state: str | None = None
        self.metrics = AgentMetrics()
        self._metrics_error: str | None = None  # the write failure last logged (once, not per cycle)

    def report(
        self,
        error: StellaError | None,
        changed: bool,
        view: TrustView | None,
        changes: tuple[str, ...] = (),
        *,
        host_kind: str,
    ) -> None:
        """Log-once bookkeeping: a failure once per distinct error (repeats at debug), the
        recovery once, freshness only on transitions; what a changing sync changed, once,
        one INFO line per change (a cycle whose re-read failed still committed them)."""
        if error is not None:
            self.failures += 1
            self.metrics.consecutive_failures = self.failures
            key = error_key(error.message)  # a scratch file's random name is not a new error
            if key != self.last_error:
                self.log.error(
                    "refresh failed: %s (hint: %s)",
                    error.message,
                    error.hint_for(host_kind),
                )
                self.last_error = key
            else:
                self.log.debug("refresh failed again (%d): %s", self.failures, error.message)
            self._log_changes(changes)
        else:
            if self.failures:
                self.log.info("refresh recovered after %d failures", self.failures)
            self.failures = 0
            self.metrics.consecutive_failures = 0
            self.last_error = None
            REPEATS.reset()
            if changed and view is not None:
                versions = " ".join(f"{r} v{i.version}" for r, i in view.roles.items())
                self.log.info("trust updated: %s", versions)
            self._log_changes(changes)
        state = view.freshness.state if view is not None else "unusable"
        if state != self.last_state:
            self._log_transition(state, view)
            self.last_state = state

    def _log_changes(self, changes: tuple[str, ...]) -> None:
        """What a sync changed, one INFO line per change (policy/changes.py words them)."""
        for change in changes:
            self.log.info("trust changed: %s", change)

    def _log_transition(self, state: str, view: TrustView | None) -> None:
        """A freshness transition, at the level it deserves: grace warns, stale and unusable
        are errors (consumers refuse the trust), fresh again is news only after another state."""
        if state == FreshnessState.FRESH:
            if self.last_state is not None:
                self.log.info("trust is fresh again")
            return
        assert state in (FreshnessState.GRACE, FreshnessState.STALE, "unusable")
        if state == FreshnessState.GRACE and view is not None:
            self.log.warning(
                "trust entered grace: signed metadata expired at %s; stale at %s",
                iso(view.freshness.expires),
                iso(view.freshness.stale_after),
            )
        elif state == FreshnessState.STALE and view is not None:
            self.log.error(
                "trust is STALE since %s: consumers refuse it until a refresh succeeds",
                iso(view.freshness.stale_after),
            )
        else:
            self.log.error("cached trust is not usable (not initialised or failed re-verification)")

    def export_metrics(self, view: TrustView | None, path: Path | None, notify_dropped: int) -> None:
        """The metrics for this cycle's view (or "unusable"), written to `path` when one is
        configured; a retired pin is warned about once, when it first appears."""
        m = self.metrics
        if view is not None:
            m.freshness = view.freshness.state
            m.seconds_until_stale = (view.freshness.stale_after - view.at).total_seconds()
            m.role_versions = {r: i.version for r, i in view.roles.items()}
            m.role_expiries = {r: i.expires.timestamp() for r, i in view.roles.items()}
            for pin in set(view.retired_pins) - set(m.retired_pins):  # a warning once per pin
                self.log.warning(
                    "pinned target %r was retired by the repository; remove it from pinned_targets", pin
                )
            m.retired_pins = list(view.retired_pins)
        else:
            m.freshness = "unusable"
        m.notify_dropped = notify_dropped
        if path is not None:
            try:
                write_metrics(path, m)
            except OSError as exc:  # once per distinct failure, so a full disk does not flood the journal
                reason = f"{path}: {exc.strerror or exc}"
                if reason != self._metrics_error:
                    self.log.warning("cannot write metrics to %s", reason)
                    self._metrics_error = reason
                return
            if self._metrics_error is not None:
                self.log.info("metrics written to %s again", path)
                self._metrics_error = None
