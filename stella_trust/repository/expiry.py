"""Each role's expiry rule (the operator's signing rhythm): how long a signature lasts and
when it must be renewed. Not a client policy: nothing here decides what a client accepts.

The rhythm travels inside the role's own signed metadata (the unrecognised field
`x-stella-trust-expiry`, which TUF clients ignore and python-tuf keeps byte for byte), the
way tuf-on-ci carries `x-tuf-on-ci-expiry-period`. So every machine that holds the
published repository (the timer host, a releaser's laptop, a monitoring job with a pull)
knows the same rhythm without a shared config file. A repository signed before the field
existed falls back to the workspace's legacy `repo.json` lifetimes, then to the defaults.

Online roles (snapshot, timestamp) are re-signed by `trust repo bump-online` when they are
inside their `resign_within` window; offline roles (root, targets, delegated roles) need a
key holder, so `check` alarms when they come inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tuf.api.metadata import Metadata

from stella_trust._internal.timefmt import compact_duration, parse_duration
from stella_trust.errors import UsageError
from stella_trust.repository.roles import ROLES

FIELD = "x-stella-trust-expiry"
ONLINE_ROLES = ("snapshot", "timestamp")


@dataclass(frozen=True)
class ExpiryRule:
    """`lifetime`: expiry = signing time + lifetime. `resign_within`: renew when less is left."""

    lifetime: timedelta
    resign_within: timedelta

    def field(self) -> dict[str, str]:
        """The rule as the signed field carries it, so every machine reads the same rhythm."""
        return {
            "lifetime": compact_duration(self.lifetime),
            "resign-within": compact_duration(self.resign_within),
        }

    def due(self, expires: datetime, now: datetime) -> bool:
        """Inside the re-sign window: the timer renews an online role now, not at expiry."""
        return expires - now <= self.resign_within

    def missed(self, expires: datetime, now: datetime) -> bool:
        """An online role whose timer should have renewed it by now: half its window gone."""
        return expires - now <= self.resign_within / 2


# A weekly or fortnightly operator rhythm: the timestamp lives a day and is renewed from
# 6 hours of age (a 6-hourly timer renews it on every run); the snapshot lives 14 days and
# is renewed when half is left; targets and root are offline and alarm 60 days ahead.
DEFAULTS: dict[str, ExpiryRule] = {
    "root": ExpiryRule(timedelta(days=365), timedelta(days=60)),
    "targets": ExpiryRule(timedelta(days=180), timedelta(days=60)),
    "snapshot": ExpiryRule(timedelta(days=14), timedelta(days=7)),
    "timestamp": ExpiryRule(timedelta(days=1), timedelta(hours=18)),
}


def default_rule(role: str) -> ExpiryRule:
    """The rhythm of a role nobody chose one for (a delegated role takes targets')."""
    return DEFAULTS.get(role, DEFAULTS["targets"])


def rule_for_lifetime(role: str, lifetime: timedelta) -> ExpiryRule:
    """A lifetime chosen by the operator keeps the default's proportion for its window."""
    default = default_rule(role)
    share = default.resign_within / default.lifetime
    return ExpiryRule(lifetime, lifetime * share)


def read_rule(md: Metadata[Any], role: str, legacy_lifetime: str | None = None) -> ExpiryRule:
    """The rhythm a role was signed with (its own field), else legacy config, else default."""
    field = md.signed.unrecognized_fields.get(FIELD)
    if isinstance(field, dict):
        try:
            return ExpiryRule(
                parse_duration(str(field["lifetime"])), parse_duration(str(field["resign-within"]))
            )
        except (KeyError, ValueError):
            pass  # a hand-edited field: the defaults are safer than a guess
    if legacy_lifetime is not None:
        try:
            return rule_for_lifetime(role, parse_duration(legacy_lifetime))
        except ValueError:
            pass
    return default_rule(role)


def stamp_rule(md: Metadata[Any], rule: ExpiryRule) -> None:
    """Record the rhythm in the metadata about to be signed."""
    md.signed.unrecognized_fields[FIELD] = rule.field()


def parse_rule(role: str, lifetime: str, resign_within: str | None) -> ExpiryRule:
    """`set-expiry ROLE 14d [--resign-within 7d]` -> a validated rule."""
    life = parse_duration(lifetime)
    if life <= timedelta(0):
        raise ValueError("a lifetime must be longer than zero")
    rule = rule_for_lifetime(role, life)
    if resign_within is not None:
        window = parse_duration(resign_within)
        if not timedelta(0) < window < life:
            raise ValueError("--resign-within must be longer than zero and shorter than the lifetime")
        rule = ExpiryRule(life, window)
    return rule


DEFAULT_EXPIRES = {"root": "365d", "targets": "180d", "snapshot": "14d", "timestamp": "1d"}


def parse_expires(text: str | None) -> dict[str, str]:
    """`root=365d,timestamp=1d` -> lifetimes per role (defaults for the others)."""
    lifetimes = dict(DEFAULT_EXPIRES)
    for part in filter(None, (text or "").split(",")):
        role, _, value = part.partition("=")
        role = role.strip()
        if role not in ROLES or not value:
            raise UsageError(f"--expires: {part!r} is not ROLE=DURATION with ROLE in {', '.join(ROLES)}")
        try:
            parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"--expires: {exc}") from exc
        lifetimes[role] = value.strip()
    return lifetimes
