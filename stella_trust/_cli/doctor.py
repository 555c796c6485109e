"""`trust doctor` and `trust config show`: check a host end to end; show the effective
configuration and where each value came from.

The checks themselves live in `_internal/diagnose.py`; this module only renders them.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from stella_trust._cli.options import InstanceOption, JsonOption, config_path, globals_of, load, reported
from stella_trust.errors import StellaError

config_app = typer.Typer(
    help="The effective configuration of this host.",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n"
        "  trust config show\n\n"
        "  trust --config /etc/stella-trust/trust.yaml config show --json\n\n"
        "Each subcommand's --help has more examples."
    ),
)


def doctor(ctx: typer.Context, instance: InstanceOption = None, as_json: JsonOption = False) -> None:
    """Check this host end to end: config, cache, anchor, trust, repository, clock, metrics.

    One line per check, `ok`, `warn` or `fail`, with a hint under anything not ok: the
    config loads and validates; the cache directory exists and this user can write it (a
    file is created and removed); the trust anchor matches the config's anchor_sha256;
    cached trust re-verifies from it, and how fresh it is (grace warns, stale fails);
    pinned targets and the last sync; the repository answers (at most 5 s; skipped in
    offline mode); this clock agrees with the repository's Date header (TUF expiry checks
    read it: warn beyond 5 minutes, fail beyond an hour); the agent's metrics file, if
    metrics_path is set. A check whose prerequisite failed is left out. With --json the
    result is {"config", "checks": [{"check", "state", "detail", "hint"}], "counts"}, and
    each warn check is also one of the envelope's `warnings`.

    Exit code 0 when nothing fails (warnings allowed), 1 when any check fails — also when
    the failure is that trust is not usable (`trust status` exits 3 for that alone).

    Examples:

      trust doctor

      sudo -u stella-trust trust --config /etc/stella-trust/trust.yaml doctor

      trust doctor --json | jq '.result.checks[] | select(.state != "ok")'
    """
    from stella_trust._internal.diagnose import STATES, run_checks

    with reported(as_json) as env:
        path = config_path(ctx)
        checks = run_checks(lambda: load(ctx), path)
        counts = {state: sum(c.state == state for c in checks) for state in STATES}
        env.result = {
            "config": str(path),
            "checks": [c.to_json() for c in checks],
            "counts": counts,
        }
        for c in checks:
            env.say(f"{c.state:<5} {c.check}: {c.detail}")
            if c.hint and c.state != "ok":
                env.say(f"      hint: {c.hint}")
            if c.state == "warn" and as_json:
                env.warn(f"{c.check}: {c.detail}")
        failed = [c for c in checks if c.state == "fail"]
        env.say(f"{len(checks)} checks: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
        if failed:
            names = ", ".join(c.check for c in failed)
            hint = failed[0].hint if len(failed) == 1 else "fix each failing check (its hint says how)"
            env.fail(StellaError(f"{len(failed)} of {len(checks)} checks failed: {names}", hint=hint))


@config_app.command("show")
def config_show(ctx: typer.Context, instance: InstanceOption = None, as_json: JsonOption = False) -> None:
    """The effective settings (attestor.trust_repo) and the source of each.

    Sources, highest first: `flag` (e.g. --cache-dir), `env` (STELLA_TUF_ROOT_URL,
    STELLA_SIGSTORE_SERVICE_MAP, STELLA_TUF_OFFLINE_MODE, STELLA_MIRRORS; no other variable is read or
    shown), `file` (the config file) and `default`. Settings that do not validate are an
    error naming the field and where it came from, as for every command.

    Examples:

      trust config show

      trust config show --json | jq '.result.settings[] | {name, source}'
    """
    from stella_trust._internal.settings import setting_sources

    with reported(as_json) as env:
        path = config_path(ctx)
        settings = load(ctx)
        flags = {"local_cache_path": "--cache-dir"} if globals_of(ctx).cache_dir is not None else {}
        sources = setting_sources(path, flags, instance=globals_of(ctx).instance or "default")
        values = settings.model_dump(mode="json")
        rows: list[dict[str, Any]] = [
            {"name": name, "value": values[name], "source": source, "detail": detail}
            for name, (source, detail) in sources.items()
        ]
        env.result = {"config": str(path), "settings": rows}
        env.say(f"config: {path}{'' if path.exists() else ' (does not exist)'}")
        env.say(_table(rows))


def _table(rows: list[dict[str, Any]]) -> str:
    """Aligned columns; a nested section (metadata_limits) one row per field."""
    cells = [("setting", "value", "source")]
    for row in rows:
        source = row["source"] if row["detail"] is None else f"{row['source']} ({row['detail']})"
        value = row["value"]
        items = value.items() if isinstance(value, dict) and value else [(None, value)]
        for key, item in items:
            name = row["name"] if key is None else f"{row['name']}.{key}"
            cells.append((name, _text(item), source))
    widths = [max(len(cell[i]) for cell in cells) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in cells)


def _text(value: Any) -> str:
    """A setting's value as one cell: strings bare, lists comma-separated, anything else as JSON (so
    `null`, numbers and booleans read unambiguously)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "[]"
    return json.dumps(value)
