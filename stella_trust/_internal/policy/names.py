"""Target names as users type them (docs/design.md, Names): exact, else `<name>.<ext>`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from stella_trust.errors import UnknownTargetError


def match_name(name: str, names: Iterable[str]) -> str:
    """Exact match, else the single target named `<name>.<ext>`; otherwise a clear error."""
    listed = names if isinstance(names, (set, frozenset, dict)) else list(names)
    if name in listed:
        return name
    candidates = sorted(n for n in listed if n.startswith(name + "."))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise UnknownTargetError(
            f"Unknown target {name!r}: ambiguous, matches {' and '.join(map(repr, candidates))}",
            hint="use the full target name",
        )
    close = difflib.get_close_matches(name, list(listed), n=5, cutoff=0.5)
    detail = f"; close names: {', '.join(close)}" if close else ""
    raise UnknownTargetError(f"Unknown target {name!r} in the repository{detail}")
