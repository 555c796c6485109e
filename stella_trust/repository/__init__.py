"""Publishing side: build, sign and serve TUF repositories (tests, the demo, operators)."""

from stella_trust.repository.repo import Expiries, Repository, generate_signer

__all__ = ["Expiries", "Repository", "generate_signer"]
