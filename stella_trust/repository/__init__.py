"""The publishing side: build, sign, rotate and report on a TUF repository.

`Repository` is the signed metadata in memory (tests and the demo use it directly);
`Workspace` is the operator's directory behind `trust repo`. Nothing here imports the
client's internals: a repository is built with python-tuf's metadata API alone.
"""

from stella_trust.repository.metadata import Expiries, Repository, generate_signer, signed_by
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.reports import Workspace
from stella_trust.repository.rotation import rotate_role
from stella_trust.repository.workspace import parse_expires

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
