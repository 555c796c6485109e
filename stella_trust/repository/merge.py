"""Judge a workspace's metadata against the served state: by version *and* content.

Pure: bytes in, a decision out (the callers read the files; tests call this directly).
For the root chain and every targets role (top-level and delegated) it answers one of:

- **same**: the same version with the same bytes;
- **served is newer** and this workspace's version is in the served history with the same
  bytes (or the workspace saw it served): a fast-forward, take it;
- **local is ahead**: keep ours when it was published before and the served directory went
  back (a plain copy of an older drive, whatever that drive's history: a *rollback to
  repair*, clients may hold ours and the next push serves it again), or when it was never
  published and the served version is in this workspace's history (a release signed here
  and not pushed yet);
- **fork**: the same version with other bytes, or histories that part (ours was never
  published and the served one does not contain it). A version names one content forever
  (decision 10), so this is never settled by version numbers.

Timestamp and snapshot are not judged: they name the roles above and carry nothing else,
so a machine's unpublished ones are dropped and signed again above every version seen
(repository/ledger.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tuf.api.metadata import Metadata, Targets

from stella_trust.repository.state import State, version_of

# (role, version) -> the bytes of that version on one side (None: not held there)
History = Callable[[str, int], bytes | None]
# (role, version, bytes) -> True seen served, False signed here and never seen served, None unknown
SeenServed = Callable[[str, int, bytes], bool | None]

SAME, NEWER, AHEAD, REPAIR, FORK, NEW = "same", "newer", "ahead", "repair", "fork", "new"


@dataclass
class Choice:
    """The verdict for one role of a pull: which side's version to keep, and why."""

    role: str
    verdict: str  # one of the constants above
    local: int  # versions on each side (0: none)
    served: int

    @property
    def take_served(self) -> bool:
        """The served version is taken (the same, newer, or new to this workspace)."""
        return self.verdict in (SAME, NEWER, NEW)

    @property
    def keeps_local(self) -> bool:
        """Ours is kept (ahead of, or repairing, the served one); a fork is settled by taking
        the served one or refusing, never by keeping ours."""
        return self.verdict in (AHEAD, REPAIR)

    def describe(self) -> str:
        """The verdict in the words a warning or a refusal uses."""
        if self.verdict == FORK:
            if self.local == self.served:
                return f"{self.role} v{self.local} here differs from the published {self.role} v{self.served}"
            return (
                f"{self.role} v{self.local} here was never published, and the published "
                f"{self.role} v{self.served} does not contain it"
            )
        if self.verdict == REPAIR:
            return (
                f"the source serves {self.role} v{self.served}, older than the v{self.local} published before"
            )
        if self.verdict == AHEAD:
            return f"{self.role} v{self.local} here is not published yet (the source serves v{self.served})"
        return f"{self.role} v{self.served}"


@dataclass
class Merge:
    """What a pull takes: the chosen root chain and roles, and what it means."""

    roots: list[bytes]
    roles: dict[str, bytes]
    choices: dict[str, Choice] = field(default_factory=dict)

    def with_verdict(self, *verdicts: str) -> list[Choice]:
        """The roles that got one of `verdicts`."""
        return [c for c in self.choices.values() if c.verdict in verdicts]

    @property
    def forks(self) -> list[Choice]:
        """Roles where the same version has other bytes on each side: refused, or settled
        by taking the served one (`--force`, the timer)."""
        return self.with_verdict(FORK)

    @property
    def keeps_local(self) -> bool:
        """Some role of this workspace is kept over the served one (so are its timestamp and
        snapshot, which name it)."""
        return any(c.keeps_local for c in self.choices.values())


def _chain(local: list[bytes], served: list[bytes], seen: SeenServed) -> tuple[list[bytes], Choice]:
    common = 0
    while common < min(len(local), len(served)) and local[common] == served[common]:
        common += 1
    if common < min(len(local), len(served)):
        return served, Choice("root", FORK, common + 1, common + 1)
    if len(served) >= len(local):
        return served, Choice("root", SAME if len(served) == len(local) else NEWER, len(local), len(served))
    extra = [seen("root", v, local[v - 1]) for v in range(len(served) + 1, len(local) + 1)]
    return local, Choice("root", REPAIR if all(extra) else AHEAD, len(local), len(served))


def _role(
    role: str,
    ours: bytes | None,
    theirs: bytes | None,
    *,
    local_history: History,
    served_history: History,
    seen: SeenServed,
) -> Choice:
    lv = version_of(ours) if ours is not None else 0
    sv = version_of(theirs) if theirs is not None else 0
    if ours is None:
        return Choice(role, NEW, 0, sv)
    if theirs is None:  # a role only this workspace has (a delegation not published yet)
        return Choice(role, REPAIR if seen(role, lv, ours) else AHEAD, lv, 0)
    if sv == lv:
        return Choice(role, SAME if ours == theirs else FORK, lv, sv)
    if sv > lv:
        served_copy = served_history(role, lv)
        if served_copy == ours or (served_copy is None and seen(role, lv, ours) is not False):
            return Choice(role, NEWER, lv, sv)
        return Choice(role, FORK, lv, sv)
    # ours is newer. Published before: clients may hold it, so the served directory went back
    # (a plain copy of an older drive, whatever that drive's history) and ours is kept to
    # repair it. Never published: ours is a release not pushed yet when the served version
    # is in our history, else the histories parted.
    if served_history(role, lv) == ours or seen(role, lv, ours):
        return Choice(role, REPAIR, lv, sv)
    local_copy = local_history(role, sv)
    if local_copy == theirs or (local_copy is None and seen(role, sv, theirs)):
        return Choice(role, AHEAD, lv, sv)
    return Choice(role, FORK, lv, sv)


def merge(
    local: State | None,
    served: State,
    *,
    local_history: History,
    served_history: History,
    seen: SeenServed,
) -> Merge:
    """Judge every role (module docstring); forks are reported, the caller decides."""
    if local is None:
        result = Merge(roots=list(served.roots), roles=dict(served.roles))
        result.choices = {r: Choice(r, NEW, 0, served.version(r)) for r in ["root", *served.roles]}
        return result
    roots, root_choice = _chain(local.roots, served.roots, seen)
    result = Merge(roots=roots, roles={}, choices={"root": root_choice})

    def judge(role: str, ours: bytes | None, theirs: bytes | None) -> Choice:
        return _role(
            role, ours, theirs, local_history=local_history, served_history=served_history, seen=seen
        )

    targets = judge("targets", local.roles.get("targets"), served.roles.get("targets"))
    result.choices["targets"] = targets
    chosen = served.roles if targets.take_served or targets.verdict == FORK else local.roles
    result.roles["targets"] = chosen["targets"]
    delegations = Metadata[Targets].from_bytes(result.roles["targets"]).signed.delegations
    for name in (delegations.roles or {}) if delegations else {}:
        ours, theirs = local.roles.get(name), served.roles.get(name)
        if ours is None and theirs is None:
            continue
        choice = judge(name, ours, theirs)
        result.choices[name] = choice
        data = theirs if choice.take_served or choice.verdict == FORK else ours
        if data is not None:
            result.roles[name] = data
    return result
