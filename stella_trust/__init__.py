"""stella-trust: keeps a host's Sigstore trust material current from a TUF repository.

Programs that consume the trust use `open_trust()`; they never parse the cache files.
Imports stay light here so `trust --help` and `trust status` start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from stella_trust.api import open_trust as open_trust
    from stella_trust.trust import TrustView as TrustView


def __getattr__(name: str) -> Any:
    if name == "open_trust":
        from stella_trust.api import open_trust

        return open_trust
    if name == "TrustView":
        from stella_trust.trust import TrustView

        return TrustView
    raise AttributeError(name)


__all__ = ["TrustView", "__version__", "open_trust"]
