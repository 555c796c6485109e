"""The publishing side: build, sign, rotate and report on a TUF repository.

`Repository` is the signed metadata in memory (tests and the demo use it directly);
`Workspace` is the operator's directory behind `trust repo`, and each command is a plain
function over it in a module of its own (repository/workspace.py lists them). Nothing here imports the
client's internals: a repository is built with python-tuf's metadata API alone.
"""

from stella_trust.repository.expiry import parse_expires
from stella_trust.repository.metadata import Expiries, Repository, generate_signer, signed_by
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.rotation import rotate_role
from stella_trust.repository.workspace import Workspace

__all__ = [
    "Expiries",
    "Outcome",
    "RepoError",
    "Repository",
    "Workspace",
    "generate_signer",
    "parse_expires",
    "rotate_role",
    "signed_by",
]
