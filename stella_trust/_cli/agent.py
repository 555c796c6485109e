"""`trust agent`: the refresh loop for systemd units, timers and cron."""

from __future__ import annotations

from typing import Annotated

import typer

from stella_trust._cli.options import fail, load, reported
from stella_trust.errors import TrustUnusableError, UsageError


def agent(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="One cycle, then exit with sync's exit code (timers, cron).")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="auto (journal under systemd, else text), text, journal or json.",
        ),
    ] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="With --once: the cycle's outcome as one JSON envelope.")
    ] = False,
) -> None:
    """Keep trust current: refresh every refresh_interval_minutes (with jitter).

    After a failure it retries once after about retry_initial_seconds, then keeps its
    interval (a fleet never stampedes a returning origin) while the cached trust keeps
    being served. Signals: SIGTERM/SIGINT stop, SIGHUP reloads the
    config (a bad one is reported and the old one kept), SIGUSR1 refreshes now.
    Speaks sd_notify (READY, STATUS, WATCHDOG, STOPPING) under systemd.

    Examples:

      trust agent

      trust agent --once            # for stella-trust-sync.timer or cron

      trust agent --log-format json

      trust agent --once --json | jq .result.freshness.state
    """
    from stella_trust._agent.logs import configure
    from stella_trust._agent.loop import Agent

    if log_format not in ("auto", "text", "journal", "json"):
        fail(UsageError(f"--log-format must be auto, text, journal or json, not {log_format!r}"), as_json)
    if as_json and not once:
        fail(UsageError("--json goes with --once (the long-running agent logs instead)"), as_json)
    import logging

    from stella_trust._cli.envelope import debugging

    # --debug / STELLA_DEBUG=1: also the debug lines (`next refresh in 3412.5s`, repeated
    # failures, an abandoned refresh thread), for a person watching why an agent waits
    logger = configure(log_format, level=logging.DEBUG if debugging() else logging.INFO)
    with reported(as_json) as env:
        runner = Agent(lambda: load(ctx), logger=logger)
        if once:
            outcome = runner.run_once_outcome()
            view = outcome.view
            env.result = {
                "changed": outcome.changed,
                "status": runner.status_line(),
                "freshness": view.freshness.to_json() if view is not None else None,
            }
            if outcome.error is not None:
                env.fail(outcome.error)
            if outcome.exit_code:
                env.fail(TrustUnusableError("trust is not usable", hint="run `trust status` for why"))
            return
        runner.install_signal_handlers()
        raise typer.Exit(runner.run())
