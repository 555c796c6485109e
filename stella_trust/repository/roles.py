"""Which keys verify a role and how many of them signed: the delegator's view (TUF spec
5.3-5.6), asked of python-tuf (`get_verification_result`), never counted by hand.

A top-level role is delegated by root (the published one, or a staged one under ceremony);
a delegated role by the top-level targets. Every signing command asks these two questions
before it signs and again before it publishes.
"""

from __future__ import annotations

from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root

from stella_trust.errors import UsageError
from stella_trust.repository.metadata import Repository

ROLES = ("root", "targets", "snapshot", "timestamp")


def role_keys(
    repo: Repository | None, role: str, root: Root | None = None
) -> tuple[dict[str, Key], list[str], int]:
    """(keys, keyids, threshold) a role is verified with: the root's for top-level roles
    (`root` when given: a staged root), the delegating targets' for a delegated role."""
    if role in ROLES:
        assert root is not None or repo is not None
        root = root or repo.root.signed  # type: ignore[union-attr]
        return dict(root.keys), list(root.roles[role].keyids), root.roles[role].threshold
    assert repo is not None
    delegations = repo.targets.signed.delegations
    if delegations is None or not delegations.roles or role not in delegations.roles:
        raise UsageError(
            f"{role!r} is not a role of this repository",
            hint="see `trust repo status`",
        )
    delegated = delegations.roles[role]
    return dict(delegations.keys), list(delegated.keyids), delegated.threshold


def signatures(repo: Repository, role: str, md: Metadata[Any], root: Root | None = None) -> tuple[int, int]:
    """(valid signatures by distinct listed keys, threshold), per python-tuf's check."""
    delegator: Any = (root or repo.root.signed) if role in ROLES else repo.targets.signed
    result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    return len(result.signed), int(result.threshold)
