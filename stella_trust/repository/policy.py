"""Each role's signing rhythm: how long a signature lasts and when it must be renewed.

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

FIELD = "x-stella-trust-expiry"
ONLINE_ROLES = ("snapshot", "timestamp")


@dataclass(frozen=True)
class RolePolicy:
    """`lifetime`: expiry = signing time + lifetime. `resign_within`: renew when less is left."""

    lifetime: timedelta
    resign_within: timedelta

    def field(self) -> dict[str, str]:
        return {
            "lifetime": compact_duration(self.lifetime),
            "resign-within": compact_duration(self.resign_within),
        }

    def due(self, expires: datetime, now: datetime) -> bool:
        return expires - now <= self.resign_within

    def missed(self, expires: datetime, now: datetime) -> bool:
        """An online role whose timer should have renewed it by now: half its window gone."""
        return expires - now <= self.resign_within / 2


# A weekly or fortnightly operator rhythm: the timestamp lives a day and is renewed from
# 6 hours of age (a 6-hourly timer renews it on every run); the snapshot lives 14 days and
# is renewed when half is left; targets and root are offline and alarm 60 days ahead.
DEFAULTS: dict[str, RolePolicy] = {
    "root": RolePolicy(timedelta(days=365), timedelta(days=60)),
    "targets": RolePolicy(timedelta(days=180), timedelta(days=60)),
    "snapshot": RolePolicy(timedelta(days=14), timedelta(days=7)),
    "timestamp": RolePolicy(timedelta(days=1), timedelta(hours=18)),
}


def default_policy(role: str) -> RolePolicy:
    return DEFAULTS.get(role, DEFAULTS["targets"])


def policy_for_lifetime(role: str, lifetime: timedelta) -> RolePolicy:
    """A lifetime chosen by the operator keeps the default's proportion for its window."""
    default = default_policy(role)
    share = default.resign_within / default.lifetime
    return RolePolicy(lifetime, lifetime * share)


def read_policy(md: Metadata[Any], role: str, legacy_lifetime: str | None = None) -> RolePolicy:
    """The rhythm a role was signed with (its own field), else legacy config, else default."""
    field = md.signed.unrecognized_fields.get(FIELD)
    if isinstance(field, dict):
        try:
            return RolePolicy(
                parse_duration(str(field["lifetime"])), parse_duration(str(field["resign-within"]))
            )
        except (KeyError, ValueError):
            pass  # a hand-edited field: the defaults are safer than a guess
    if legacy_lifetime is not None:
        try:
            return policy_for_lifetime(role, parse_duration(legacy_lifetime))
        except ValueError:
            pass
    return default_policy(role)


def stamp_policy(md: Metadata[Any], policy: RolePolicy) -> None:
    """Record the rhythm in the metadata about to be signed."""
    md.signed.unrecognized_fields[FIELD] = policy.field()


def parse_policy(role: str, lifetime: str, resign_within: str | None) -> RolePolicy:
    """`set-expiry ROLE 14d [--resign-within 7d]` -> a validated policy."""
    life = parse_duration(lifetime)
    if life <= timedelta(0):
        raise ValueError("a lifetime must be longer than zero")
    policy = policy_for_lifetime(role, life)
    if resign_within is not None:
        window = parse_duration(resign_within)
        if not timedelta(0) < window < life:
            raise ValueError("--resign-within must be longer than zero and shorter than the lifetime")
        policy = RolePolicy(life, window)
    return policy
