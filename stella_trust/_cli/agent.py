"""`trust agent`: the refresh loop for systemd units, timers and cron."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stella_trust._cli.options import InstanceOption, fail, instances_of, load, reported, several
from stella_trust.errors import TrustUnusableError, UsageError

if TYPE_CHECKING:
    from stella_trust._agent.loop import Agent
    from stella_trust._cli.envelope import Envelope
    from stella_trust._internal.settings import TrustRepoSettings


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
    instance: InstanceOption = None,
) -> None:
    """Keep trust current: refresh every refresh_interval_minutes (with jitter).

    After a failure it retries once after about retry_initial_seconds, then keeps its
    interval (a fleet never stampedes a returning origin) while the cached trust keeps
    being served. Signals: SIGTERM/SIGINT stop, SIGHUP reloads the
    config (a bad one is reported and the old one kept), SIGUSR1 refreshes now.
    Speaks sd_notify (READY, STATUS, WATCHDOG, STOPPING) under systemd. Without --instance,
    every instance of the config is kept current, each on its own schedule.

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
    if once and several(ctx):
        from stella_trust._agent.several import instance_logger
        from stella_trust._cli.instances import each_instance

        def one(name: str, env: Envelope) -> dict[str, Any]:
            return _once(Agent(_loader(ctx, name), logger=instance_logger(logger, name)), env)

        each_instance(ctx, as_json, one)
        return
    with reported(as_json) as env:
        if once:
            _once(Agent(lambda: load(ctx), logger=logger), env)
            return
        from stella_trust._cli.launch import settle_for_long_run

        settle_for_long_run()  # a daemon: the collector as CPython runs it (launch.py)
        if several(ctx):
            from stella_trust._agent.several import instance_logger, run_all

            names = instances_of(ctx)
            agents = [Agent(_loader(ctx, name), logger=instance_logger(logger, name)) for name in names]
            raise typer.Exit(run_all(agents))
        runner = Agent(lambda: load(ctx), logger=logger)
        runner.install_signal_handlers()
        raise typer.Exit(runner.run())


def _loader(ctx: typer.Context, name: str) -> Callable[[], TrustRepoSettings]:
    """The settings of one instance, read again on SIGHUP."""
    return lambda: load(ctx, name)


def _once(runner: Agent, env: Envelope) -> dict[str, Any]:
    """One cycle of one instance into `env` (the result `--json` prints); fails like `sync`."""
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
    return dict(env.result)
