"""sigstore-python's checks in a second process that imports them while this one reads the trust
(`trust verify`, issue 24; docs/design.md, decision 24).

Most of a `trust verify` run is imports, in two independent halves: the trust side (settings,
PyYAML, python-tuf's metadata API, the re-verification from the anchor) and sigstore-python's
verifier (its models, rekor-types, cryptography's X.509), ~180 ms alone. One process pays them
one after the other while a second core idles. So the entry (launch.py), on seeing `trust
verify`, imports what both halves need (SHARED_IMPORTS) and forks a worker: the worker imports
the verifier while this process imports the CLI and reads and re-verifies the trust and the
artifacts, then the worker runs the checks on what it is sent.

What the worker may do is narrow, and what it answers is not believed blindly:
- It is forked before the trust is read and holds nothing of it; it is sent the policy and
  the trusted root this process re-verified (decision 2) with each batch, and verifies with
  nothing else.
- Its checks are `verify_with_trust`, the same function this process would run (sigstore-
  python's verification, the entry bound to the log whose key verified it, the windows); the
  sealed-log comparison (decision 15) stays in this process, on an accepted answer only.
- An answer is used only whole: one result per artifact sent, in order, each a
  VerificationOutcome or a StellaError. A worker that dies, answers short or answers anything
  else is dropped and this process verifies the batch itself: a failed worker costs time,
  never a result.
- It never writes to standard output (its stdin and stdout are /dev/null) and never prints a
  traceback: it ends with `os._exit`, without atexit handlers or flushing the stdio buffers it
  inherited. At the end of the run it is killed and reaped.
- It is started only where it can help and fork is safe: two or more CPUs this process may run
  on (its affinity, and the cgroup's CPU quota), room below the cgroup's memory limit, no other
  thread (fork copies only the calling thread). It is used only for a policy
  whose artifacts are digests (a managed key's artifact is its bytes: no copy of them through
  a pipe); otherwise it is ended unused.

Messages are pickles framed by an 8-byte length, over two pipes only these two processes hold:
the worker is this program forked, so it is trusted exactly as this process is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import signal
import struct
import threading
from collections.abc import Sequence

from stella_trust._internal.sigstore.outcome import VerificationOutcome
from stella_trust._internal.sigstore.signers import Policy
from stella_trust.errors import StellaError

Answer = VerificationOutcome | StellaError
Work = tuple[bytes | str, bytes]  # (artifact: "sha256:<hex>" or its bytes, bundle)

_LENGTH = struct.Struct(">Q")
MAX_MESSAGE_BYTES = 1 << 30  # a bound on what one read may allocate; batches are far smaller
# Free memory a cgroup limit must leave for a worker to start: three times what it adds (~40 MiB
# of its own, the rest shared with this process until either writes; a 20-artifact run's two
# processes peak at 53 MiB each against 66 MiB for one process alone).
WORKER_ROOM_BYTES = 128 << 20


class VerifyWorker:
    """The parent's end of a started worker: `verify` a batch, then `close`."""

    def __init__(self, pid: int, requests: int, answers: int) -> None:
        self.pid = pid
        self._requests = requests
        self._answers = answers
        self._usable = True
        self._closed = False

    def verify(self, policy: Policy, trusted_root_json: bytes, batch: Sequence[Work]) -> list[Answer] | None:
        """The worker's answer for each of `batch`, in order; None if it gave no whole answer (it
        is then not asked again, and the caller verifies the batch itself)."""
        if not self._usable:
            return None
        try:
            _send(self._requests, pickle.dumps((policy, trusted_root_json, list(batch))))
            message = _receive(self._answers)
            answers = pickle.loads(message) if message is not None else None
        except Exception:  # a pipe gone, a message no pickle: no answer, whatever the way (docstring)
            answers = None
        if not _whole(answers, len(batch)):
            self._usable = False
            return None
        assert isinstance(answers, list)
        return answers

    def close(self) -> None:
        """End the worker (finished or still importing, it holds nothing to save) and reap it.
        Closing twice is closing once."""
        if self._closed:
            return
        self._closed = True
        self._usable = False
        for fd in (self._requests, self._answers):
            try:
                os.close(fd)
            except OSError:
                continue
        with contextlib.suppress(ProcessLookupError):  # gone already (SIGCHLD ignored reaps it)
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored: the kernel reaped it
            os.waitpid(self.pid, 0)


# Imported before the fork: both halves need them (the trust read parses trusted_root.json with
# sigstore's models and cryptography, verifies metadata with python-tuf; sigstore-python's
# verifier imports them all), so neither pays them twice. The rest of each half's imports run
# side by side on two CPUs. A test keeps the list true: each is imported by both halves.
SHARED_IMPORTS = ("pydantic.main", "cryptography.x509", "tuf.api.metadata", "sigstore_models.trustroot.v1")


def start_worker() -> VerifyWorker | None:
    """A worker for this run, or None where it cannot help or fork is not safe (module docstring).
    Started by the entry point as soon as it sees `trust verify` (launch.py), before the run's
    other imports but those both halves need (SHARED_IMPORTS)."""
    if usable_cpus() < 2 or threading.active_count() > 1:
        return None
    room = memory_room()
    if room is not None and room < WORKER_ROOM_BYTES:
        return None
    import importlib

    for name in SHARED_IMPORTS:
        importlib.import_module(name)
    return fork_worker()


def usable_cpus(membership: str = "/proc/self/cgroup", hierarchy: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may run on (its affinity), fewer if its cgroup's CPU quota (cgroup v2
    `cpu.max`, this group's and every parent's) allows less: a container or unit limited to one
    CPU gains nothing from a second process, and pays its duplicate start-up. (A cgroup v1 host's
    quota is not read: the affinity alone decides there.)"""
    cpus = len(os.sched_getaffinity(0))
    for group in _groups(membership, hierarchy):
        allowed = _quota_cpus(os.path.join(group, "cpu.max"))
        if allowed is not None:
            cpus = min(cpus, allowed)
    return cpus


def memory_room(membership: str = "/proc/self/cgroup", hierarchy: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's cgroup (v2) and its parents may still take before their `memory.max`
    (the least over them); None where no limit is set or readable. The worker adds ~40 MiB: a
    container near its limit must not have a run killed that one process would have finished."""
    room: int | None = None
    for group in _groups(membership, hierarchy):
        left = _left_below_max(group)
        if left is not None:
            room = left if room is None else min(room, left)
    return room


def _groups(membership: str, hierarchy: str) -> list[str]:
    """The cgroup v2 directories of this process, its own first, up to the hierarchy's root; none
    on a cgroup v1 host or where /proc/self/cgroup does not read."""
    try:
        with open(membership, encoding="ascii") as lines:
            path = next((line[3:].strip() for line in lines if line.startswith("0::")), None)
    except OSError:
        return []
    if path is None:
        return []
    groups = []
    group = path.strip("/")
    while True:
        groups.append(os.path.join(hierarchy, group) if group else hierarchy)
        if not group:
            return groups
        group = group.rpartition("/")[0]


def _quota_cpus(limit_file: str) -> int | None:
    """`cpu.max` ("QUOTA PERIOD", or "max PERIOD") as whole CPUs, rounded up; None: no limit, or
    no such file (the group has no CPU controller, or this is not cgroup v2)."""
    try:
        with open(limit_file, encoding="ascii") as limit:
            quota, _, period = limit.read().strip().partition(" ")
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def _left_below_max(group: str) -> int | None:
    """`memory.max` less `memory.current` of one group; None: no limit, or not readable."""
    try:
        with open(os.path.join(group, "memory.max"), encoding="ascii") as limit:
            maximum = limit.read().strip()
        if maximum == "max":
            return None
        with open(os.path.join(group, "memory.current"), encoding="ascii") as usage:
            return int(maximum) - int(usage.read().strip())
    except (OSError, ValueError):
        return None


def fork_worker() -> VerifyWorker | None:
    """Fork the worker (start_worker has decided it may); None if the system refuses a fork."""
    # not inherited by anything either process runs; never 0 or 1 (a caller that closed its
    # stdin or stdout would be handed them), which the worker points at /dev/null
    held: list[int] = []
    try:
        for _ in range(2):
            held.extend(os.pipe())  # each entry always names an open descriptor, moved or not
            for index in (-2, -1):
                held[index] = _above_stdio(held[index])
        pid = os.fork()
    except OSError:  # out of descriptors or processes: the run verifies in one process
        for fd in held:
            os.close(fd)
        return None
    requests_read, requests_write, answers_read, answers_write = held
    if pid == 0:  # the worker: never returns into the caller's code
        status = 1
        try:
            os.close(requests_write)
            os.close(answers_read)
            _serve(requests_read, answers_write)
            status = 0
        finally:
            os._exit(status)
    os.close(requests_read)
    os.close(answers_write)
    return VerifyWorker(pid, requests_write, answers_read)


def _serve(requests: int, answers: int) -> None:
    """The worker's life: import the verifier, then answer each batch until the requests end.
    An exception other than a StellaError ends it without an answer (the parent verifies that
    batch itself, and meets the same exception in its own words)."""
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)
    os.dup2(quiet, 1)
    os.close(quiet)
    from stella_trust._internal.memo import VerificationMemo
    from stella_trust._internal.sigstore.verify import import_verifier
    from stella_trust._internal.verifiers import verify_with_trust

    import_verifier()
    memo = VerificationMemo()
    while (message := _receive(requests)) is not None:
        policy, trusted_root_json, batch = pickle.loads(message)
        results: list[Answer] = []
        for artifact, bundle in batch:
            try:
                results.append(verify_with_trust(trusted_root_json, bundle, artifact, policy, memo=memo))
            except StellaError as error:
                results.append(error)
        _send(answers, pickle.dumps(results))


def _above_stdio(fd: int) -> int:
    """`fd`, or a close-on-exec copy of it numbered 3 or above (the original closed once the copy
    exists: if the copy fails, `fd` is still open and the caller's)."""
    if fd > 2:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _whole(answers: object, expected: int) -> bool:
    """One VerificationOutcome or StellaError per artifact sent, nothing else."""
    return (
        isinstance(answers, list)
        and len(answers) == expected
        and all(isinstance(answer, (VerificationOutcome, StellaError)) for answer in answers)
    )


def _send(fd: int, payload: bytes) -> None:
    """One message: its length, then its bytes (a pipe may take fewer bytes than offered)."""
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> bytes | None:
    """The next message, or None at the end of the stream (also a stream cut inside a message)."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE_BYTES:
        return None
    return _read_exactly(fd, length)


def _read_exactly(fd: int, count: int) -> bytes | None:
    pieces: list[bytes] = []
    left = count
    while left:
        piece = os.read(fd, min(left, 1 << 20))
        if not piece:
            return None
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)
