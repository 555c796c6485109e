"""python-tuf and OS failures in the words users search for, each with a hint."""

from __future__ import annotations

from tuf.api import exceptions as tuf_exceptions
from tuf.api.serialization import DeserializationError

from stella_trust import errors


def translate(exc: BaseException, url: str) -> errors.StellaError:
    """python-tuf and OS failures in the words users search for, with a hint."""
    if isinstance(exc, errors.StellaError):
        return exc
    if isinstance(exc.__cause__, errors.StellaError):  # ours, wrapped by python-tuf's fetch()
        return exc.__cause__
    if isinstance(exc, tuf_exceptions.ExpiredMetadataError):
        return errors.MetadataExpiredError(f"TUF metadata expired: {exc}")
    if isinstance(exc, tuf_exceptions.UnsignedMetadataError):
        return errors.SignatureVerificationError(f"Signature verification failed: {exc}")
    if isinstance(exc, tuf_exceptions.BadVersionNumberError):
        return errors.RollbackError(f"Rollback refused: {exc}")
    if isinstance(exc, tuf_exceptions.LengthOrHashMismatchError):
        return errors.TargetMismatchError(f"Length or hash mismatch: {exc}")
    if isinstance(exc, tuf_exceptions.RepositoryError):
        return errors.VerificationError(f"TUF verification failed: {exc}")
    if isinstance(exc, tuf_exceptions.DownloadLengthMismatchError):
        return errors.TargetMismatchError(
            f"Download exceeded its size limit: {exc}",
            hint="an endless or oversized response; raise metadata_limits only if the "
            "repository is known to be that large — cached trust is unchanged",
        )
    if isinstance(exc, tuf_exceptions.DownloadError):
        return errors.RepositoryUnreachableError(f"Repository unreachable: {exc} ({url})")
    if isinstance(exc, DeserializationError):
        return errors.MalformedMetadataError(f"Malformed metadata: {exc}")
    if isinstance(exc, OSError):
        return errors.StellaError(
            f"Cache write failed: {exc}", hint="check free space and permissions on the cache"
        )
    return errors.StellaError(f"Sync failed: {type(exc).__name__}: {exc}")
