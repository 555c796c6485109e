"""Several artifacts verified with one trust read (`trust verify FILE...`, issue 24).

A release is many artifacts signed the same way. sigstore-python's CLI takes them in one
invocation, each with its bundle beside it at `FILE.sigstore.json`; so does `trust verify`.
What is shared across them is only what does not depend on the artifact: the trust view
(read and re-verified from the anchor once, decisions 2 and 13), sigstore-python's verifier
built from it (one per trusted-root content, `sigstore/verify.py`), and the sealed log states
(re-verified once, decision 15). Every artifact still gets every check of its own: its bundle
read by the bounds of decision 5, the whole sigstore-python verification, the entry bound to
its log and the windows checked, and the sealed-log comparison. One artifact's failure is its
own line; the others are still checked and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from stella_trust._internal.sigstore.errors import BundleVerificationError
from stella_trust._internal.sigstore.outcome import VerificationOutcome
from stella_trust._internal.sigstore.signers import KeyPolicy, Policy
from stella_trust._internal.timefmt import iso
from stella_trust._internal.verifiers import verify_with_trust
from stella_trust._internal.verify_inputs import DIGEST_PREFIX, artifact_input, read_input
from stella_trust.errors import StellaError, TrustUnusableError, UsageError

if TYPE_CHECKING:
    from stella_trust._internal.memo import VerificationMemo
    from stella_trust._internal.sigstore.sealedlogs import SealedLog
    from stella_trust._internal.verify_worker import VerifyWorker
    from stella_trust.sigstore_types import TransparencyLog

BUNDLE_SUFFIX = ".sigstore.json"  # sigstore-python's (and cosign's --new-bundle-format) convention


class Subject(NamedTuple):
    """One artifact as named on the command line, and where its bundle is read from."""

    artifact: str
    bundle: Path


class Checked(NamedTuple):
    """One artifact's result: what its verification established, or the error that ended it."""

    subject: Subject
    outcome: VerificationOutcome | None = None
    log_checks: tuple[str, ...] = ()
    error: StellaError | None = None

    def document(self) -> dict[str, Any]:
        """This artifact's entry of `result.artifacts[]` (datetimes as ISO 8601 with Z)."""
        head: dict[str, Any] = {
            "artifact": self.subject.artifact,
            "bundle": str(self.subject.bundle),
            "verified": self.error is None,
        }
        if self.outcome is not None:
            outcome = {key: _jsonable(value) for key, value in asdict(self.outcome).items()}
            return {**head, **outcome, "sealed_log_checks": list(self.log_checks)}
        error = self.error
        assert error is not None
        check = error.check if isinstance(error, BundleVerificationError) else None
        return {
            **head,
            "check": check,
            "error": {"message": error.message, "hint": error.hint, "exit_code": error.exit_code},
        }


def subjects(artifacts: Sequence[str], bundle: Path | None) -> list[Subject]:
    """Pair each artifact with its bundle: `--bundle` for a single artifact, else
    `ARTIFACT.sigstore.json` beside each. A digest names no file, so it has no "beside"."""
    if bundle is not None:
        if len(artifacts) > 1:
            raise UsageError(
                f"--bundle names one artifact's bundle, and {len(artifacts)} artifacts were given",
                hint=f"drop --bundle: each artifact's bundle is then read from ARTIFACT{BUNDLE_SUFFIX}",
            )
        return [Subject(artifacts[0], bundle)]
    for artifact in artifacts:
        if _is_digest(artifact):
            raise UsageError(
                f"{artifact[:24]}…: a digest has no file beside which its bundle could lie",
                hint="name its bundle with --bundle (one artifact), or give the artifact's path",
            )
    return [Subject(artifact, Path(artifact + BUNDLE_SUFFIX)) for artifact in artifacts]


class Prepared(NamedTuple):
    """One artifact's inputs, read and bounded before any cryptography runs."""

    subject: Subject
    artifact: bytes | str  # bytes (managed keys sign the message) or "sha256:<hex>"
    bundle: bytes


def prepare(subject: Subject, policy: Policy) -> Prepared:
    """The artifact (hashed as a stream, or its bytes for a managed key) and the bundle."""
    artifact = artifact_input(subject.artifact, need_bytes=isinstance(policy, KeyPolicy))
    return Prepared(subject, artifact, read_input(subject.bundle, "bundle"))


SealedCheck = Callable[[bytes], list[str]]


def verify_one(
    prepared: Prepared,
    trusted_root_json: bytes,
    policy: Policy,
    sealed: SealedCheck,
    memo: VerificationMemo | None = None,
    worker: VerifyWorker | None = None,
) -> Checked:
    """Every check for one artifact; raises what it meets (the caller decides what ends the run).
    `memo` holds the run's verifier: one per trusted-root content (decision 13). With a `worker`,
    sigstore-python's checks run there (verify_worker.py), unless it gives no answer."""
    answers = worker.verify(policy, trusted_root_json, [_work(prepared)]) if worker is not None else None
    return _checked(prepared, answers[0] if answers else None, trusted_root_json, policy, sealed, memo)


def _checked(
    prepared: Prepared,
    answer: VerificationOutcome | StellaError | None,
    trusted_root_json: bytes,
    policy: Policy,
    sealed: SealedCheck,
    memo: VerificationMemo | None,
) -> Checked:
    """One artifact's result from the worker's `answer` (its outcome, or its refusal raised as
    verify_with_trust's own), or, with none, from the verification run here; then the sealed-log
    comparison, in this process, on an accepted outcome only."""
    if answer is None:
        outcome = verify_with_trust(trusted_root_json, prepared.bundle, prepared.artifact, policy, memo=memo)
    elif isinstance(answer, StellaError):
        raise answer
    else:
        outcome = answer
    return Checked(prepared.subject, outcome, tuple(sealed(prepared.bundle)))


BATCH_BYTES = 8 << 20  # a batch's bundles and inputs held at once, and sent to the worker together


def verify_each(
    items: Sequence[Subject],
    trusted_root_json: bytes,
    policy: Policy,
    sealed: SealedCheck,
    worker: VerifyWorker | None = None,
) -> list[Checked]:
    """Each artifact verified in turn with the same trust; an artifact's own failure (its files
    unreadable, its bundle refused, a check failed) is recorded and the next one is checked.
    Trust that became unusable mid-run (TrustUnusableError) ends the run: no later line may
    pass on trust that no longer holds. sigstore-python's verifier is built once for the run.
    Artifacts are read a batch at a time (at most BATCH_BYTES held); with a `worker`, each
    batch's sigstore-python checks run there, one message each way."""
    from stella_trust._internal.memo import VerificationMemo

    run = VerificationMemo()
    results: list[Checked] = []
    for batch in _batches(items, policy):
        ready = [entry for entry in batch if isinstance(entry, Prepared)]
        sent = [_work(p) for p in ready]
        answers = worker.verify(policy, trusted_root_json, sent) if worker is not None and sent else None
        in_order = iter(answers) if answers is not None else None  # one per `ready`, in its order
        for entry in batch:
            if isinstance(entry, Checked):  # could not be read: its own failure, already recorded
                results.append(entry)
                continue
            answer = next(in_order) if in_order is not None else None
            try:
                results.append(_checked(entry, answer, trusted_root_json, policy, sealed, run))
            except TrustUnusableError:
                raise
            except StellaError as error:
                results.append(Checked(entry.subject, error=error))
    return results


def _batches(items: Sequence[Subject], policy: Policy) -> Iterator[list[Prepared | Checked]]:
    """The artifacts read in order, a batch closing once it holds BATCH_BYTES; an artifact that
    cannot be read is its Checked failure in its place."""
    batch: list[Prepared | Checked] = []
    held = 0
    for subject in items:
        try:
            prepared = prepare(subject, policy)
        except TrustUnusableError:
            raise
        except StellaError as error:
            batch.append(Checked(subject, error=error))
            continue
        batch.append(prepared)
        held += len(prepared.bundle) + len(prepared.artifact)
        if held >= BATCH_BYTES:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def _work(prepared: Prepared) -> tuple[bytes | str, bytes]:
    return prepared.artifact, prepared.bundle


def sealed_log_check(sealed_logs_dir: Path | None, logs: Sequence[TransparencyLog]) -> SealedCheck:
    """The bundle's log entries against the sealed log states this host holds (decision 15),
    the states read and re-verified now with the view's log keys, once for every artifact of
    the run. A contradiction fails that artifact's verification. `None` (a trusted root the
    user named): no sealed state applies."""
    if sealed_logs_dir is None:
        return lambda _bundle: []
    if not sealed_logs_dir.is_dir():  # none held: nothing to re-verify (sealedlogs.py not loaded)
        return lambda bundle: check_against(bundle, {})
    from stella_trust._internal.sigstore.sealedlogs import read_sealed

    held = read_sealed(sealed_logs_dir, logs)
    return lambda bundle: check_against(bundle, held)


def check_against(bundle: bytes, held: Mapping[str, SealedLog]) -> list[str]:
    """One bundle's entries against held sealed states; a fork or contradiction is a failed
    "log inclusion" check with the hint a fork deserves."""
    from stella_trust._internal.sigstore.logcheck import check_entries, entry_facts
    from stella_trust._internal.sigstore.tlogerrors import LogForkError, TransparencyLogError

    try:
        return check_entries(entry_facts(bundle), dict(held))
    except TransparencyLogError as exc:
        hint = (
            "the log showed this bundle another history than the sealed one: do not use the artifact; "
            "keep the bundle as evidence and report it to the log's operator (the held trust and "
            "log state are unchanged)"
            if isinstance(exc, LogForkError)
            else None
        )
        raise BundleVerificationError(
            "log inclusion", f"the entry contradicts the sealed log state: {exc.message}", hint
        ) from exc


def failed_summary(results: Sequence[Checked]) -> StellaError | None:
    """The run's one error when any artifact failed (exit 1), naming them."""
    failed = [r.subject.artifact for r in results if r.error is not None]
    if not failed:
        return None
    named = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    return StellaError(
        f"{len(failed)} of {len(results)} artifacts did not verify: {named}",
        hint="each artifact's line names the check that failed; do not use the artifacts that failed",
    )


def _is_digest(value: str) -> bool:
    return value.startswith(DIGEST_PREFIX) and not Path(value).exists()


def _jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601 with Z (and inside lists), so a result prints as JSON."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
