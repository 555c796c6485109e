"""The one error of the transparency-log modules (merkle, signednote, tiles).

Why its own module: merkle.py, signednote.py and tiles.py all raise it, and the Sigstore
layer's errors.py belongs to bundle verification. It derives from `VerificationError`
because a log state that does not verify is refused the same way metadata that does not
verify is: the operation fails (exit 1) and the host's trust is left unchanged.
"""

from __future__ import annotations

from stella_trust.errors import VerificationError


class TransparencyLogError(VerificationError):
    """A checkpoint, tile, entry bundle or Merkle proof did not parse or did not verify.

    The message is one line, `<where>: <what failed>`, e.g.
    `tile/0/x001/234.p/7: 200 bytes, expected 224`.
    """

    default_hint = (
        "the transparency log data does not verify against the log's key and RFC 6962 hashes; "
        "trust is unchanged"
    )

    def __init__(self, where: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{_one_line(where)}: {_one_line(problem)}", hint)
        self.where = where
        self.problem = problem


def _one_line(text: str) -> str:
    """Quoted input may hold newlines; a user sees exactly one line."""
    return " ".join(text.split())


class LogForkError(TransparencyLogError):
    """Two verified states of one log disagree: the log signed two histories.

    Evidence against the log, not against the bundle's TUF trust: the importer refuses the
    carried log state and keeps the held one, and says so in the import's warnings; `trust
    verify` refuses the bundle whose tree it is (logcheck.py), the held state unchanged."""

    default_hint = (
        "the log showed two histories: keep this bundle as evidence and report it to the log's "
        "operator; the held log state is kept and `trust verify` still checks against it"
    )

    def __init__(self, where: str, problem: str, *, held_root: bytes, carried_root: bytes) -> None:
        super().__init__(where, problem)
        self.held_root = held_root
        self.carried_root = carried_root
