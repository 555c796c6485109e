"""Commands that act on every instance of a host (`sync`, `status`, `agent --once` without
`--instance`; decision 23): each instance runs on its own, in order, and a failure of one is
reported under its name without stopping or touching the others.

With `--json` the envelope keeps its one shape; `result` is `{"instances": {NAME: {"ok",
"result", "error"}}}`. A host with the one instance `default` never comes here: its output is
exactly what it was before instances existed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from stella_trust._cli.envelope import CommandFailed, Envelope
from stella_trust._cli.options import instances_of, reported
from stella_trust._internal.redact import redact
from stella_trust.errors import StellaError

INSTANCE_FAILED_HINT = "the other instances' trust is unaffected; see `trust status --instance NAME`"


class InstanceEnvelope(Envelope):
    """One instance's share of the command's envelope: its text indented under its name, its
    warnings named after it in the command's own list."""

    def __init__(self, command: str, as_json: bool, *, parent: Envelope, instance: str) -> None:
        """The share of `parent` (the command's envelope) that instance `instance` fills."""
        super().__init__(command, as_json)
        self.parent = parent
        self.instance = instance

    def say(self, text: str) -> None:
        """Human output, indented under the instance's heading."""
        if not self.as_json:
            typer.echo("\n".join(f"  {line}" for line in redact(text).split("\n")))

    def warn(self, text: str) -> None:
        """A warning, named after its instance (on stderr now and in the envelope)."""
        self.parent.warn(f"instance {self.instance}: {text}")


def each_instance(
    ctx: typer.Context, as_json: bool, one: Callable[[str, Envelope], Any], names: list[str] | None = None
) -> None:
    """Run `one(name, env)` for every instance of the host (or `names`); it returns the
    instance's result. The command fails (with the highest exit code met) when any instance
    failed, after all ran."""
    names = names if names is not None else instances_of(ctx)
    with reported(as_json) as env:
        per: dict[str, dict[str, Any]] = {}
        failures: list[tuple[str, StellaError]] = []
        for name in names:
            env.say(f"instance {name}:")
            sub = InstanceEnvelope(env.command, as_json, parent=env, instance=name)
            error: StellaError | None = None
            result: Any = None
            try:
                result = one(name, sub)
            except CommandFailed as failed:
                error, result = failed.error, sub.result
            except StellaError as exc:
                error, result = exc, sub.result
            except OSError as exc:  # the OS's words, one line, as the envelope says them
                where = f": {exc.filename}" if exc.filename else ""
                error = StellaError(f"{exc.strerror or exc}{where}")
            per[name] = {
                "ok": error is None,
                "result": result,
                "error": None
                if error is None
                else {"message": error.message, "hint": sub.hint(error), "exit_code": error.exit_code},
            }
            if error is not None:
                failures.append((name, error))
                sub.say(f"failed: {error.message}")  # stdout: stderr keeps one error line
        env.result = {"instances": per}
        if failures:
            code = max(error.exit_code for _, error in failures)
            named = ", ".join(name for name, _ in failures)
            first_name, first = failures[0]
            hint = sub_hint(first, INSTANCE_FAILED_HINT)
            env.fail(
                StellaError(
                    f"{len(failures)} of {len(names)} instances failed ({named}): "
                    f"instance {first_name}: {first.message}",
                    hint=hint,
                    exit_code=code,
                )
            )


def sub_hint(error: StellaError, tail: str) -> str:
    """The failing instance's own hint, then the reminder that the others are unaffected."""
    own = error.hint_for("unknown") or ""
    return f"{own}; {tail}" if own else tail
