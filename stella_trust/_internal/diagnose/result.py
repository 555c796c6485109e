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
        return {"check": self.check, "state": self.state, "detail": self.detail, "hint": self.hint}


def ok(check: str, detail: str) -> Check:
    return Check(check, "ok", detail)


def warn(check: str, detail: str, hint: str) -> Check:
    return Check(check, "warn", detail, hint)


def fail(check: str, detail: str, hint: str | None) -> Check:
    return Check(check, "fail", detail, hint or None)
