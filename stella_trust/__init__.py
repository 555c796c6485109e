"""stella-trust: keeps a host's Sigstore trust material current from a TUF repository.

Programs that consume the trust call `open_trust()` and read the typed `TrustView` it
returns; they never parse the cache files. Everything not listed in `__all__` (the
`_internal`, `_cli` and `_agent` packages) is private and may change.

Imports stay lazy here so `trust --help` and `trust status` start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stella_trust._internal.sigstore.errors import BundleVerificationError as BundleVerificationError
    from stella_trust._internal.sigstore.verify import VerificationOutcome as VerificationOutcome
    from stella_trust._version import __version__ as __version__
    from stella_trust.api import TrustWatcher as TrustWatcher
    from stella_trust.api import open_trust as open_trust
    from stella_trust.api import verify_bundle as verify_bundle
    from stella_trust.errors import (
        CacheVerificationError as CacheVerificationError,
    )
    from stella_trust.errors import (
        NotInitialisedError as NotInitialisedError,
    )
    from stella_trust.errors import (
        RepositoryError as RepositoryError,
    )
    from stella_trust.errors import (
        StaleTrustError as StaleTrustError,
    )
    from stella_trust.errors import (
        StellaError as StellaError,
    )
    from stella_trust.errors import (
        TrustUnusableError as TrustUnusableError,
    )
    from stella_trust.errors import (
        UsageError as UsageError,
    )
    from stella_trust.sigstore_types import (
        CertificateAuthority as CertificateAuthority,
    )
    from stella_trust.sigstore_types import (
        ServiceUrl as ServiceUrl,
    )
    from stella_trust.sigstore_types import (
        SigstoreTrust as SigstoreTrust,
    )
    from stella_trust.sigstore_types import (
        TimestampAuthority as TimestampAuthority,
    )
    from stella_trust.sigstore_types import (
        TransparencyLog as TransparencyLog,
    )
    from stella_trust.view import (
        CertFact as CertFact,
    )
    from stella_trust.view import (
        Endpoints as Endpoints,
    )
    from stella_trust.view import (
        Freshness as Freshness,
    )
    from stella_trust.view import (
        FreshnessState as FreshnessState,
    )
    from stella_trust.view import (
        FulcioEndpoint as FulcioEndpoint,
    )
    from stella_trust.view import (
        KeyFact as KeyFact,
    )
    from stella_trust.view import (
        RekorEndpoint as RekorEndpoint,
    )
    from stella_trust.view import (
        RoleInfo as RoleInfo,
    )
    from stella_trust.view import (
        TargetEntry as TargetEntry,
    )
    from stella_trust.view import (
        TrustView as TrustView,
    )

_PUBLIC_TYPES = {
    "stella_trust.view": (
        "CertFact",
        "Endpoints",
        "Freshness",
        "FreshnessState",
        "FulcioEndpoint",
        "KeyFact",
        "RekorEndpoint",
        "RoleInfo",
        "TargetEntry",
        "TrustView",
    ),
    "stella_trust.sigstore_types": (
        "CertificateAuthority",
        "ServiceUrl",
        "SigstoreTrust",
        "TimestampAuthority",
        "TransparencyLog",
    ),
    "stella_trust.errors": (  # the three kinds a caller catches, and the common ones
        "CacheVerificationError",
        "NotInitialisedError",
        "RepositoryError",
        "StaleTrustError",
        "StellaError",
        "TrustUnusableError",
        "UsageError",
    ),
}
_LAZY = {
    "__version__": "stella_trust._version",  # one module fewer for every `trust` run (issue 24)
    "open_trust": "stella_trust.api",
    "TrustWatcher": "stella_trust.api",
    "verify_bundle": "stella_trust.api",
    "VerificationOutcome": "stella_trust._internal.sigstore.verify",
    "BundleVerificationError": "stella_trust._internal.sigstore.errors",
    **{name: module for module, names in _PUBLIC_TYPES.items() for name in names},
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
