"""`trust verify`'s worker process (verify_worker.py, design decision 24), on real staging bundles:
its answers are the in-process ones, whole or not used; a dead, short or lying worker costs
time, never a result; it is always reaped; StellaErrors cross the pipe intact; it is started only
where a second CPU is free and no thread runs; what it imports ahead is what a verification needs.

The workers here are forked with `fork_worker` (the test process may run pytest-xdist's threads,
which `start_worker` rightly refuses to fork beside); `start_worker`'s own decision runs in a
fresh interpreter.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stella_trust._internal import verify_many
from stella_trust._internal.sigstore.errors import (
    BundleRefusedError,
    BundleVerificationError,
    TrustMaterialError,
)
from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.verify_many import subjects, verify_each, verify_one
from stella_trust._internal.verify_worker import (
    SHARED_IMPORTS,
    VerifyWorker,
    fork_worker,
    memory_room,
    usable_cpus,
)
from stella_trust.errors import StaleTrustError, StellaError, UsageError
from tests.conftest import clean_env

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
BUNDLES = STAGING / "bundles"
ROOT = (STAGING / "trusted_root.json").read_bytes()
POLICY = IdentityPolicy(identity="william@yossarian.net", issuer="https://github.com/login/oauth")


@pytest.fixture
def release(tmp_path: Path) -> list[str]:
    """Artifacts with their bundles beside them, as staging's cases.json judges them for POLICY:
    two that verify, a log entry that contradicts its bundle, an artifact its bundle did not
    sign, an unknown media type, no signed time, and an artifact with no bundle at all."""
    names = []
    for name in (
        "bundle_v3.txt",
        "bundle_cve_2022_36056.txt",
        "bundle_invalid_version.txt",
        "bundle_v3_alt.txt",
        "bundle_v3_no_signed_time.txt",
    ):
        shutil.copy(BUNDLES / name, tmp_path / name)
        shutil.copy(BUNDLES / f"{name}.sigstore.json", tmp_path / f"{name}.sigstore.json")
        names.append(name)
    shutil.copy(BUNDLES / "bundle.txt", tmp_path / "swapped.txt")
    shutil.copy(BUNDLES / "bundle_v3.txt.sigstore.json", tmp_path / "swapped.txt.sigstore.json")
    shutil.copy(BUNDLES / "bundle.txt", tmp_path / "unsigned.txt")
    names[2:2] = ["swapped.txt", "unsigned.txt"]
    return [str(tmp_path / name) for name in names]


@pytest.fixture
def worker() -> Iterator[VerifyWorker]:
    started = fork_worker()
    assert started is not None
    try:
        yield started
    finally:
        started.close()


def _sealed(bundle: bytes) -> list[str]:
    return [f"sealed: {hashlib.sha256(bundle).hexdigest()[:8]}"]


def _same(worked: list[verify_many.Checked], local: list[verify_many.Checked]) -> None:
    """Result for result: the same document (outcome, check, message, hint, exit code) and the
    same error class."""
    assert [r.document() for r in worked] == [r.document() for r in local]
    assert [type(r.error) for r in worked] == [type(r.error) for r in local]


def _reaped(pid: int) -> bool:
    """`pid` is no child of this process any more: it was waited for (a child still running, or a
    zombie nobody waited for, would be found here)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_workers_answers_are_the_in_process_ones(
    release: list[str], worker: VerifyWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = verify_each(subjects(release, None), ROOT, POLICY, _sealed)
    assert [r.error is None for r in local] == [True, False, False, False, False, True, False]

    def not_here(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("verified in the test's process, not by the worker")

    monkeypatch.setattr(verify_many, "verify_with_trust", not_here)  # the forked worker keeps its own
    worked = verify_each(subjects(release, None), ROOT, POLICY, _sealed, worker)
    _same(worked, local)
    assert worked[0].log_checks == tuple(_sealed((BUNDLES / "bundle_v3.txt.sigstore.json").read_bytes()))
    assert isinstance(worked[1].error, BundleVerificationError) and worked[1].error.check == "log inclusion"
    assert isinstance(worked[4].error, BundleRefusedError | BundleVerificationError)
    # the same worker answers the next run too (a second batch, a second policy)
    other = IdentityPolicy(identity="someone@else.example", issuer="https://github.com/login/oauth")
    refused = verify_each(subjects(release[:1], None), ROOT, other, _sealed, worker)
    assert isinstance(refused[0].error, BundleVerificationError) and refused[0].error.check == "identity"


def test_a_single_artifact_raises_the_workers_refusal_as_its_own(
    release: list[str], worker: VerifyWorker
) -> None:
    (good, swapped) = (verify_many.prepare(s, POLICY) for s in subjects([release[0], release[2]], None))
    checked = verify_one(good, ROOT, POLICY, _sealed, worker=worker)
    assert checked.outcome is not None and checked.outcome.signer == "william@yossarian.net"
    with pytest.raises(BundleVerificationError, match="verification failed: digest") as refused:
        verify_one(swapped, ROOT, POLICY, _sealed, worker=worker)
    assert refused.value.hint  # the hint crossed the pipe with the message


def test_unusable_trust_from_the_worker_ends_the_run(release: list[str], worker: VerifyWorker) -> None:
    """A trusted root the worker refuses is every artifact's refusal, in the same words as in
    process; trust that turns unusable (the sealed check here) still ends the run."""
    broken = b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": 3}'
    worked = verify_each(subjects(release[:2], None), broken, POLICY, _sealed, worker)
    local = verify_each(subjects(release[:2], None), broken, POLICY, _sealed)
    _same(worked, local)
    assert all(isinstance(r.error, StellaError) for r in worked)

    def stale(_bundle: bytes) -> list[str]:
        raise StaleTrustError("Trust is stale")

    with pytest.raises(StaleTrustError):
        verify_each(subjects(release[:1], None), ROOT, POLICY, stale, worker)


def test_a_worker_that_dies_costs_time_not_results(release: list[str]) -> None:
    dead = fork_worker()
    assert dead is not None
    os.kill(dead.pid, signal.SIGKILL)
    try:
        assert dead.verify(POLICY, ROOT, [("sha256:" + "00" * 32, b"{}")]) is None
        worked = verify_each(subjects(release, None), ROOT, POLICY, _sealed, dead)  # verified here instead
    finally:
        dead.close()
    _same(worked, verify_each(subjects(release, None), ROOT, POLICY, _sealed))
    assert _reaped(dead.pid)
    dead.close()  # closing twice is closing once


def _liar(answer: bytes) -> VerifyWorker:
    """A process in the worker's place that reads one request and answers `answer` (raw bytes,
    framing included), then exits."""
    requests_read, requests_write = os.pipe()
    answers_read, answers_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(requests_write)
            os.close(answers_read)
            os.read(requests_read, 1 << 20)
            os.write(answers_write, answer)
        finally:
            os._exit(0)
    os.close(requests_read)
    os.close(answers_write)
    return VerifyWorker(pid, requests_write, answers_read)


def _framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(8, "big") + payload


@pytest.mark.parametrize(
    "answer",
    [
        _framed(pickle.dumps([])),  # short: fewer answers than artifacts
        _framed(pickle.dumps(["verified", "verified"])),  # not outcomes
        _framed(pickle.dumps({"a": 1})),  # not a list
        _framed(b"not a pickle at all"),
        _framed(pickle.dumps([1, 2]))[:-3],  # cut inside the message
        (1 << 40).to_bytes(8, "big"),  # a length no batch has
        b"",  # no answer
    ],
    ids=["short", "not-outcomes", "not-a-list", "not-a-pickle", "cut", "huge-length", "silent"],
)
def test_only_a_whole_answer_is_used(release: list[str], answer: bytes) -> None:
    liar = _liar(answer)
    try:
        worked = verify_each(subjects(release[:2], None), ROOT, POLICY, _sealed, liar)
        assert liar.verify(POLICY, ROOT, [("sha256:" + "00" * 32, b"{}")]) is None  # not asked again
    finally:
        liar.close()
    _same(worked, verify_each(subjects(release[:2], None), ROOT, POLICY, _sealed))
    assert _reaped(liar.pid)


def test_batches_are_bounded_and_keep_their_order(
    release: list[str], worker: VerifyWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    real = worker.verify

    def counted(*args: object) -> object:
        sent.append(len(args[2]))  # type: ignore[arg-type]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "verify", counted)
    monkeypatch.setattr(verify_many, "BATCH_BYTES", 1)  # every artifact closes its batch
    worked = verify_each(subjects(release, None), ROOT, POLICY, _sealed, worker)
    _same(worked, verify_each(subjects(release, None), ROOT, POLICY, _sealed))
    assert sent == [1] * 6  # one message per readable artifact; the one without a bundle is not sent


def test_stella_errors_cross_the_pipe_whole() -> None:
    errors: list[StellaError] = [
        BundleVerificationError("identity", "no SAN matched", "check --certificate-identity"),
        BundleRefusedError("bundle is not JSON"),
        TrustMaterialError("trusted_root.json", "no logs"),
        StaleTrustError("Trust is stale"),
        UsageError("bad flag", hint="see --help"),
        StellaError("odd", hint="h", exit_code=3, bundle_only_hint="import a bundle"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.args == error.args and vars(copy) == vars(error)
        assert str(copy) == str(error) and copy.exit_code == error.exit_code
        assert copy.hint_for("bundle-only") == error.hint_for("bundle-only")


def test_after_import_verifier_a_verification_imports_nothing() -> None:
    """The worker imports ahead (import_verifier) what the first verification would otherwise
    import after the trust arrives; and the modules started before the fork (SHARED_IMPORTS) are
    ones both halves import: the trust read, and the worker's verifier."""
    artifact = "sha256:" + hashlib.sha256((BUNDLES / "bundle_v3.txt").read_bytes()).hexdigest()
    script = f"""
import json, sys
from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.sigstore.verify import import_verifier
from stella_trust._internal.verifiers import verify_with_trust
import_verifier()
before = set(sys.modules)
verify_with_trust(open({str(STAGING / "trusted_root.json")!r}, "rb").read(),
    open({str(BUNDLES / "bundle_v3.txt.sigstore.json")!r}, "rb").read(), {artifact!r},
    IdentityPolicy(identity="william@yossarian.net", issuer="https://github.com/login/oauth"))
print(json.dumps({{"new": sorted(set(sys.modules) - before), "all": sorted(before)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stderr
    worker = json.loads(done.stdout)
    assert worker["new"] == []
    trust_read = f"""
import json, sys
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.sigstore.trusted_root import parse_trusted_root
parse_trusted_root(open({str(STAGING / "trusted_root.json")!r}, "rb").read())
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", trust_read], capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stderr
    parent = set(json.loads(done.stdout))
    for name in SHARED_IMPORTS:
        assert name in parent and name in worker["all"], name


def test_start_worker_only_with_a_second_cpu_room_and_no_thread() -> None:
    """In a fresh interpreter (no pytest threads): two CPUs start a worker, one does not, a
    running thread does not, a cgroup memory limit close above does not."""
    script = """
import os, sys, threading
from stella_trust._internal import verify_worker
if sys.argv[1] == "thread":
    stop = threading.Event(); threading.Thread(target=stop.wait, daemon=True).start()
if sys.argv[1] in ("tight", "roomy"):  # what the cgroup's memory.max leaves (tested below)
    room = 64 << 20 if sys.argv[1] == "tight" else 1 << 30
    verify_worker.memory_room = lambda: room
worker = verify_worker.start_worker()
print("worker" if worker is not None else "none")
if worker is not None:
    worker.close()
"""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to show the worker starting (CI has two)")

    def run(mode: str, cpus: set[int]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            env=clean_env(),
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    two = set(sorted(os.sched_getaffinity(0))[:2])
    assert run("plain", two) == "worker"
    assert run("plain", {min(two)}) == "none"
    assert run("thread", two) == "none"
    assert run("tight", two) == "none"  # 64 MiB below the memory limit: one process only
    assert run("roomy", two) == "worker"


def _fake_cgroup(tmp_path: Path, group: str) -> tuple[Path, Path, Path]:
    """A /proc/self/cgroup naming `group` (cgroup v2), and the hierarchy with its directory: the
    membership file, the hierarchy's root, the group's directory."""
    membership = tmp_path / "cgroup"
    membership.write_text(f"0::/{group}\n")
    hierarchy = tmp_path / "fs"
    leaf = hierarchy / group
    leaf.mkdir(parents=True)
    return membership, hierarchy, leaf


def test_usable_cpus_follow_the_cgroup_quota(tmp_path: Path) -> None:
    membership, hierarchy, unit = _fake_cgroup(tmp_path, "system.slice/trust.service")
    cpus = len(os.sched_getaffinity(0))
    assert usable_cpus(str(membership), str(hierarchy)) == cpus  # no quota anywhere
    (unit / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(str(membership), str(hierarchy)) == cpus
    (hierarchy / "system.slice" / "cpu.max").write_text("50000 100000\n")  # half a CPU, on a parent
    assert usable_cpus(str(membership), str(hierarchy)) == 1
    (hierarchy / "system.slice" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: a second one
    assert usable_cpus(str(membership), str(hierarchy)) == min(cpus, 2)
    (unit / "cpu.max").write_text("garbage\n")  # unreadable limits are no limit
    assert usable_cpus(str(membership), str(hierarchy)) == min(cpus, 2)
    assert usable_cpus(str(tmp_path / "absent"), str(hierarchy)) == cpus
    membership.write_text("4:memory:/x\n")  # cgroup v1 only: the affinity decides
    assert usable_cpus(str(membership), str(hierarchy)) == cpus


def test_memory_room_is_the_least_any_limit_above_leaves(tmp_path: Path) -> None:
    membership, hierarchy, job = _fake_cgroup(tmp_path, "ci.slice/job")
    assert memory_room(str(membership), str(hierarchy)) is None  # no limit anywhere
    (job / "memory.max").write_text("max\n")
    assert memory_room(str(membership), str(hierarchy)) is None
    (hierarchy / "ci.slice" / "memory.max").write_text(f"{512 << 20}\n")
    (hierarchy / "ci.slice" / "memory.current").write_text(f"{400 << 20}\n")
    assert memory_room(str(membership), str(hierarchy)) == 112 << 20  # a parent's limit counts
    (job / "memory.max").write_text(f"{1 << 30}\n")
    (job / "memory.current").write_text(f"{100 << 20}\n")
    assert memory_room(str(membership), str(hierarchy)) == 112 << 20  # the least of them
    (hierarchy / "ci.slice" / "memory.current").write_text("garbage\n")  # unreadable: no limit
    assert memory_room(str(membership), str(hierarchy)) == (1 << 30) - (100 << 20)
    membership.write_text("4:memory:/x\n")  # cgroup v1 only: nothing read
    assert memory_room(str(membership), str(hierarchy)) is None


def test_a_closed_stdin_and_stdout_do_not_become_the_workers_pipes() -> None:
    """A caller that closed fds 0 and 1 would be handed them by os.pipe; the worker points 0 and 1
    at /dev/null, so its pipes must lie above them, and it must still answer."""
    artifact = "sha256:" + hashlib.sha256((BUNDLES / "bundle_v3.txt").read_bytes()).hexdigest()
    script = f"""
import os
os.close(0); os.close(1)
from stella_trust._internal.sigstore.signers import IdentityPolicy
from stella_trust._internal.verify_worker import fork_worker
worker = fork_worker()
answers = worker.verify(IdentityPolicy(identity="william@yossarian.net",
    issuer="https://github.com/login/oauth"), open({str(STAGING / "trusted_root.json")!r}, "rb").read(),
    [({artifact!r}, open({str(BUNDLES / "bundle_v3.txt.sigstore.json")!r}, "rb").read())])
worker.close()
os.write(2, repr(type(answers[0]).__name__ if answers else None).encode())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0 and done.stderr == "'VerificationOutcome'", done.stderr


def test_a_system_out_of_descriptors_or_processes_gets_no_worker_and_keeps_no_pipe() -> None:
    """os.pipe or os.fork refused (EMFILE, EAGAIN): no worker, every descriptor opened so far
    closed, and no exception for the entry to print (it verifies in one process). In a fresh
    interpreter: no other thread there opens descriptors while they are counted."""
    script = """
import errno, os
from stella_trust._internal import verify_worker
real_pipe, opened = os.pipe, []
def second_refused():
    if len(opened) == 2:
        raise OSError(errno.EMFILE, "Too many open files")
    pair = real_pipe(); opened.extend(pair); return pair
def no_fork():
    raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
before = sorted(os.listdir("/proc/self/fd"))
os.pipe = second_refused
first = verify_worker.fork_worker()
os.pipe, os.fork = real_pipe, no_fork
second = verify_worker.fork_worker()
print(first, second, len(opened), sorted(os.listdir("/proc/self/fd")) == before)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "2", "True"]


def test_send_writes_a_message_larger_than_a_pipe_holds(worker: VerifyWorker) -> None:
    """A batch bigger than the pipe's buffer (64 KiB) arrives whole: the worker reads while the
    test writes; its answer is one refusal per artifact (the bundles are not bundles)."""
    batch = [("sha256:" + "00" * 32, b"x" * 200_000)] * 3
    answers = worker.verify(POLICY, ROOT, batch)
    assert answers is not None and len(answers) == 3
    assert all(isinstance(answer, StellaError) for answer in answers)
