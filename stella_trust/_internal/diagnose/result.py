"""One verdict of `trust doctor`: ok / warn / fail, a line of detail, a hint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

State = Literal["ok", "warn", "fail"]
STATES: tuple[State, ...] = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One verdict: `check` names what was looked at, `detail` says what was found."""

    check: str
    state: State
    detail: str
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The shape `trust doctor --json` prints for one check."""
        return {"check": self.check, "state": self.state, "detail": self.detail, "hint": self.hint}


def ok(check: str, detail: str) -> Check:
    """A check that passed: nothing to do, so no hint."""
    return Check(check, "ok", detail)


def warn(check: str, detail: str, hint: str) -> Check:
    """Trust is served, but something needs attention: a hint is required."""
    return Check(check, "warn", detail, hint)


def fail(check: str, detail: str, hint: str | None) -> Check:
    """Something is broken and must be fixed; an empty hint is dropped rather than printed."""
    return Check(check, "fail", detail, hint or None)
