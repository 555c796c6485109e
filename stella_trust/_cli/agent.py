"""`trust agent`: the refresh loop for systemd units, timers and cron."""

from __future__ import annotations

from typing import Annotated

import typer

from stella_trust._cli.options import fail, load, reported
from stella_trust.errors import UsageError


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
) -> None:
    """Keep trust current: refresh every refresh_interval_minutes (with jitter).

    Failures back off (retry_initial_seconds, doubling, capped at the interval) while the
    cached trust keeps being served. Signals: SIGTERM/SIGINT stop, SIGHUP reloads the
    config (a bad one is reported and the old one kept), SIGUSR1 refreshes now.
    Speaks sd_notify (READY, STATUS, WATCHDOG, STOPPING) under systemd.

    Examples:

      trust agent

      trust agent --once            # for stella-trust-sync.timer or cron

      trust agent --log-format json
    """
    from stella_trust._agent.logs import configure
    from stella_trust._agent.loop import Agent

    if log_format not in ("auto", "text", "journal", "json"):
        fail(UsageError(f"--log-format must be auto, text, journal or json, not {log_format!r}"), False)
    logger = configure(log_format)
    with reported():
        runner = Agent(lambda: load(ctx), logger=logger)
        if once:
            raise typer.Exit(runner.run_once())
        runner.install_signal_handlers()
        raise typer.Exit(runner.run())
