"""One exception hierarchy for every user-facing failure.

Each error carries the one line a user sees, a hint saying what to do next, and
the process exit code, so the CLI and the agent render failures identically and
never have to guess what went wrong from a library traceback.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNUSABLE = 3


# The clause a failed sync's hint ends with: what the host still serves (sync.py says it
# for the host it ran on; the default hints assume a host that holds trust).
HELD_TRUST_UNCHANGED = "cached trust is unchanged"
NO_TRUST_YET = "this host holds no trust yet: nothing is served until a sync or an import succeeds"


BUNDLE_ONLY_REFRESH = (
    "import a fresh bundle: `trust import BUNDLE` (made on a connected host with "
    "`trust snapshot export --out BUNDLE`)"
)


class StellaError(Exception):
    """Base of every error stella-trust reports to a user."""

    exit_code = EXIT_FAILED
    default_hint = ""
    # The way out on a host that takes trust only from bundles (no tuf_url, or offline
    # mode): `trust sync` cannot help there (docs/design.md, host states); and on a host
    # known to be connected, where `hint` must also serve a host of unknown kind.
    default_bundle_only_hint: str | None = None
    default_connected_hint: str | None = None

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        exit_code: int | None = None,
        bundle_only_hint: str | None = None,
    ) -> None:
        """`hint` None takes the class's hints, the host-specific ones included; an explicit hint
        replaces them all (the caller knows the situation better than the defaults), unless
        `bundle_only_hint` is given too."""
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        self.bundle_only_hint = bundle_only_hint or (self.default_bundle_only_hint if hint is None else None)
        self.connected_hint = self.default_connected_hint if hint is None else None
        if exit_code is not None:
            self.exit_code = exit_code

    def hint_for(self, host: str) -> str:
        """The hint for this kind of host: "connected", "bundle-only" or "unknown"."""
        chosen = {"bundle-only": self.bundle_only_hint, "connected": self.connected_hint}.get(host)
        return chosen or self.hint

    def __str__(self) -> str:
        """The message alone: the hint and the exit code are rendered beside it, so a log line or an
        error envelope stays one line."""
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole: class, message and every attribute (hint, exit code, a failed check's
        name). `trust verify`'s worker process sends its refusals back this way
        (verify_worker.py); Exception's own reduction calls `cls(*args)`, which a subclass with
        another signature (`BundleVerificationError(check, detail)`) cannot take."""
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(kind: type[StellaError], args: tuple[Any, ...], state: dict[str, Any]) -> StellaError:
    """A StellaError as `__reduce__` took it apart, without calling its `__init__`."""
    error = kind.__new__(kind, *args)
    error.args = args
    error.__dict__.update(state)
    return error


# ---- the three kinds a caller catches: usage, the repository, the cache ------------------------


class UsageError(StellaError):
    """What the caller asked for cannot work: arguments, the config, the host's mode."""

    exit_code = EXIT_USAGE


class RepositoryError(StellaError):
    """The repository (or a bundle from it) could not be reached, or what it served was
    refused: the trust held before is unchanged (decision 16)."""


class ConfigError(UsageError):
    """The configuration file, an environment variable or a flag is malformed."""

    exit_code = EXIT_FAILED
    default_hint = "fix the named field (see config/trust.yaml for a commented example)"


class TrustUnusableError(StellaError):
    """This host's trust must not be served: none yet, stale, unreadable, or failed
    re-verification (a cache problem: exit 3)."""

    exit_code = EXIT_UNUSABLE


class NotInitialisedError(TrustUnusableError):
    """No trust anchor in the cache: nothing can be trusted yet."""

    exit_code = EXIT_UNUSABLE
    default_hint = (
        "run `trust init --tuf-url URL --root ROOT.json` first "
        "(an air-gapped host: `trust init --root ROOT.json`, then `trust import BUNDLE`)"
    )
    default_bundle_only_hint = "run `trust init --root ROOT.json`, then `trust import BUNDLE`"
    default_connected_hint = "run `trust init --tuf-url URL --root ROOT.json`"


class StaleTrustError(TrustUnusableError):
    """The held trust is past its earliest signed expiry plus the grace period (decision 3): refused
    to consumers, because a verifier using it could accept revoked keys."""

    default_hint = "run `trust sync` (or import a fresh bundle on air-gapped hosts)"
    default_bundle_only_hint = BUNDLE_ONLY_REFRESH


class CacheVerificationError(TrustUnusableError):
    """The cache on disk does not verify from the trust anchor: it was edited or corrupted."""

    default_hint = "run `trust sync` to rebuild the cache from the trust anchor"
    default_bundle_only_hint = BUNDLE_ONLY_REFRESH


class AnchorChangedError(TrustUnusableError):
    """The cache's anchor is not the root `init` recorded: it was replaced on disk."""

    default_hint = (
        "the cache may have been tampered with: re-initialise from the root you trust "
        "(`trust init --force --root ROOT.json`) and investigate who wrote the cache"
    )


class RepositoryUnreachableError(RepositoryError):
    """The repository or a log server could not be reached or answered with an HTTP error or a
    timeout (python-tuf's `DownloadError`); nothing was accepted from it."""

    default_hint = "check tuf_url, the network path and any proxy; cached trust is unchanged"


class MetadataExpiredError(RepositoryError):
    """The repository served metadata past its signed expiry (python-tuf's `ExpiredMetadataError`,
    TUF spec 5.3.10, 5.4.4, 5.5.6, 5.6.5): a freeze attack looks like this, so a sync refuses it
    while the held trust stays usable until it turns stale."""

    default_hint = (
        "the repository operator must re-sign it (`trust repo bump-online`); "
        "cached trust is unchanged and usable until it turns stale"
    )


class SignatureVerificationError(RepositoryError):
    """Metadata not signed by a threshold of the keys its delegator names (python-tuf's
    `UnsignedMetadataError`, TUF spec 5.3.4, 5.4.2, 5.5.3, 5.6.3): an arbitrary software
    attack, or a mis-signed release."""

    default_hint = (
        "metadata is not signed by the keys the trusted root names; "
        "possible attack or mis-signed release — cached trust is unchanged"
    )


class RollbackError(RepositoryError):
    """A role offered at a lower version than this host already trusts, or not at the version its
    parent names (TUF spec 5.3.5, 5.4.3, 5.5.4-5.5.5, 5.6.4; decision 4), by the repository or by
    a bundle: a rollback attack or a stale mirror."""

    default_hint = (
        "the repository offered older metadata than this host already trusts; "
        "possible rollback attack or a stale mirror — cached trust is unchanged"
    )


class TargetMismatchError(RepositoryError):
    """Bytes whose length or hashes differ from what the signed metadata says (TUF spec 5.5.2,
    5.6.2, 5.7.3), or a download past its size limit (an endless-data attack)."""

    default_hint = (
        "the bytes served do not match the signed length/hash; possible attack or "
        "a broken mirror — cached trust is unchanged"
    )


class MalformedMetadataError(RepositoryError):
    """Metadata that does not parse as TUF metadata (python-tuf's `DeserializationError`): judged
    before any signature could be checked."""

    default_hint = "the repository served metadata that does not parse; cached trust is unchanged"


class UnknownTargetError(StellaError):
    """A target name the signed metadata does not list, or one that matches more than one target
    (names without extension, docs/design.md): the name asked for is wrong, which says nothing
    against the trust held (exit 1, not 3)."""

    default_hint = "check the name against `trust status --json` targets or the repository"


class ServiceMapError(RepositoryError):
    """The service map target is missing or malformed."""

    default_hint = "check service_map_target in the config and the repository contents"


class TrustAnchorError(StellaError):
    """The root offered at `init` cannot be the anchor: not a valid root, not the bytes
    `--root-sha256` names, or not readable (decision 1: nothing is trusted because the network said
    so)."""

    default_hint = "obtain the repository's root.json out of band and pass it with --root"


class UnsafeFileError(StellaError):
    """A file in a directory other users can write is not what it must be: a symbolic link,
    a FIFO or device, or larger than its bound. Never followed, never read."""

    default_hint = (
        "someone with write access to that directory put it there: remove it, find out who, "
        "and run the command again"
    )


class CacheUnreadableError(TrustUnusableError):
    """The cache exists but this user may not read it (not in the readers' group)."""


class LockBusyError(StellaError):
    """Another writer (sync, import, the agent) holds the cache lock past `lock_timeout_seconds`:
    writers are serialised (decision 6), so this one gives up rather than interleave."""

    default_hint = "another sync or import holds the cache lock; retry when it finishes"


class VerificationError(RepositoryError):
    """TUF verification failed for a reason other than a bad signature or a rollback."""

    default_hint = "the repository's metadata does not verify; cached trust is unchanged"


class OfflineModeError(UsageError):
    """Offline mode is on and the command would open a socket: the host's own mode refuses it, so it
    is caught as a usage error (exit 1, like a config error)."""

    exit_code = EXIT_FAILED
    default_hint = "offline mode forbids network use: import a bundle or use a file:// tuf_url"


class SyncInterrupted(StellaError):
    """A stop request (SIGTERM) arrived mid-sync; the working copy is discarded."""

    default_hint = "cached trust is unchanged"


class InternalError(StellaError):
    """An exception nobody translated: a bug. Reported as one line, never a traceback
    (the traceback is printed only with --debug / STELLA_DEBUG=1)."""

    default_hint = (
        "this is a bug in stella-trust: please report it with the output of the same "
        "command run with --debug (or STELLA_DEBUG=1)"
    )

    @classmethod
    def wrapping(cls, exc: BaseException) -> InternalError:
        """An untranslated exception as one line naming its type (the traceback only with --debug)."""
        return cls(f"internal error: {type(exc).__name__}: {exc}")
