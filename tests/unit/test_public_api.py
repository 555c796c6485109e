"""The public API (issue 22, item 8): one list of names, snapshotted, each importable, and
errors a caller can catch by kind."""

from __future__ import annotations

import ast
from pathlib import Path

import stella_trust
from stella_trust import errors

PUBLIC = [
    "BundleVerificationError",
    "CacheVerificationError",
    "CertFact",
    "CertificateAuthority",
    "Endpoints",
    "Freshness",
    "FreshnessState",
    "FulcioEndpoint",
    "KeyFact",
    "NotInitialisedError",
    "RekorEndpoint",
    "RepositoryError",
    "RoleInfo",
    "ServiceUrl",
    "SigstoreTrust",
    "StaleTrustError",
    "StellaError",
    "TargetEntry",
    "TimestampAuthority",
    "TransparencyLog",
    "TrustUnusableError",
    "TrustView",
    "TrustWatcher",
    "UsageError",
    "VerificationOutcome",
    "__version__",
    "open_trust",
    "verify_bundle",
]


def test_the_public_names_are_exactly_the_snapshot_and_each_resolves() -> None:
    assert sorted(stella_trust.__all__) == sorted(PUBLIC)  # a change here is an API change
    for name in stella_trust.__all__:
        assert getattr(stella_trust, name) is not None


def test_what_type_checkers_see_is_what_the_package_hands_out() -> None:
    """The names under TYPE_CHECKING (for type checkers) are the lazily exported ones: the
    two views of the one list cannot drift apart."""
    tree = ast.parse(Path(stella_trust.__file__).read_text())
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert checked == set(stella_trust.__all__)  # __version__ too: lazy since issue 24


def test_every_error_is_one_of_three_kinds_or_the_base() -> None:
    kinds = (errors.UsageError, errors.RepositoryError, errors.TrustUnusableError)
    assert issubclass(errors.ConfigError, errors.UsageError) and errors.ConfigError.exit_code == 1
    for refused in (errors.RollbackError, errors.SignatureVerificationError, errors.MetadataExpiredError):
        assert issubclass(refused, errors.RepositoryError)
    for unusable in (errors.NotInitialisedError, errors.StaleTrustError, errors.CacheUnreadableError):
        assert issubclass(unusable, errors.TrustUnusableError) and unusable.exit_code == 3
    grouped = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, kinds)]
    assert len(grouped) >= 15


def test_open_trust_and_the_watcher_take_an_instance_by_keyword() -> None:
    """Issue 23: a program names the instance it wants; without it, `default` (today's)."""
    import inspect

    for call in (stella_trust.open_trust, stella_trust.TrustWatcher):
        parameter = inspect.signature(call).parameters["instance"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None
    assert stella_trust.TrustView.__dataclass_fields__["instance"].default == "default"
