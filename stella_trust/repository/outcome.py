"""What an operator command did (for the CLI and `--json`), and its refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stella_trust.errors import StellaError


class RepoError(StellaError):
    """A refusal by the publishing side (exit 1, one line and a hint): nothing was published."""

    default_hint = "see `trust repo status`; nothing was published"


@dataclass
class Outcome:
    """What a command did, for the CLI to print (and `--json`)."""

    message: str
    done: bool = True
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # for a step that is not done (exit 1): what to do next; a default names publishing
    hint: str | None = None
