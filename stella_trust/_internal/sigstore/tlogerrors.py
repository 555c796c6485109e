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
