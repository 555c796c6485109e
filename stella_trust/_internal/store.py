"""The cache directory: the only code that writes there.

Layout (one cache per host)::

    <cache>/anchor.root.json     trust anchor given at `init` (never replaced by a sync)
    <cache>/state.json           last sync / error / source (written last, atomically)
    <cache>/lock                 writer lock (flock), holds the writer's pid
    <cache>/current -> generations/<id>
    <cache>/generations/<id>/metadata/root_history/N.root.json, root.json,
                                       timestamp.json, snapshot.json, targets.json, <delegated>.json
    <cache>/generations/<id>/targets/<percent-encoded target name>

Why generations: python-tuf writes metadata file by file with no lock, so a process
killed mid-refresh could leave a new timestamp beside an old snapshot. A sync works
on a hard-linked copy of the current generation (cheap: every file is replaced by
rename, never modified in place), verifies it completely, fsyncs it, then switches the
`current` symlink with one atomic rename. Readers resolve `current` once, so they see
either the old or the new trust, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from stella_trust._internal.cachelayout import (
    ANCHOR_FILE,
    COMMITTED_ROOTS_DIR,
    CURRENT_LINK,
    GENERATIONS_DIR,
    INSTANCES_DIR,
    LOCK_FILE,
    MAX_ANCHOR_BYTES,
    MAX_STATE_BYTES,
    SEALED_LOGS_DIR,
    SPARE_DIR,
    STATE_FILE,
    WORK_PREFIX,
)
from stella_trust._internal.cacheowner import CACHE_DIR_MODE as CACHE_DIR_MODE
from stella_trust._internal.cacheowner import CACHE_FILE_MODE as CACHE_FILE_MODE
from stella_trust._internal.cacheowner import (
    adopt_for,
    cannot_act_as,
    prepare_instances_dir,
    readers_gid,
    refuse_planted_links,
    remove_abandoned_work,
    share_with_readers,
    unreadable,
)
from stella_trust._internal.cachestate import CacheState
from stella_trust._internal.fs import (
    atomic_write,
    exclusive_lock,
    file_ids,
    fsync_dir,
    fsync_tree,
    read_untrusted_stat,
    remove_entries,
    set_access,
    share_tree,
)
from stella_trust._internal.generation import Generation as Generation
from stella_trust._internal.generation import generation_sequence as generation_sequence
from stella_trust._internal.generation import keep_only_our_kinds as keep_only_our_kinds
from stella_trust._internal.generation import target_filename as target_filename
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.redact import redact_all
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.timefmt import epoch_ns, from_epoch_ns, iso, parse_iso
from stella_trust.errors import (
    AnchorChangedError,
    CacheUnreadableError,
    CacheVerificationError,
    LockBusyError,
    NotInitialisedError,
    UnsafeFileError,
)


def _parsed_state(raw: bytes, memo: VerificationMemo | None) -> CacheState:
    """state.json's bytes as a state: empty when they are not a JSON object (unsigned and
    informational, as `read_state` says), CacheVerificationError for an edited floor. What the
    bytes say is a function of them alone and an idle sync leaves them as they were (it moves the
    file's mtime only, decision 4's note): remembered in `memo` by the exact bytes, so the agent
    parses state.json once per change, not every interval. Each caller gets its own copy
    (`CacheState.copy`); a refused document is refused every time, never remembered."""
    held: CacheState | None = memo.states.get(raw) if memo is not None else None
    if held is not None:
        return held.copy()
    try:
        data = json.loads(raw)
    except ValueError:
        return CacheState()
    if not isinstance(data, dict):
        return CacheState()
    state = CacheState.from_json(data)
    if memo is not None:
        memo.states.put(raw, state.copy())
    return state


def _made(path: Path, mode: int = 0o777) -> os.stat_result:
    """`path.mkdir(parents=True, exist_ok=True, mode=mode)`, asked first with one stat: every writer
    meets an existing directory, and mkdir's refusal costs an exception and a second stat. Answers
    the directory's `stat` (through a link, as `os.path.isdir` asks)."""
    try:
        st: os.stat_result | None = os.stat(path)
    except (OSError, ValueError):  # absent (or a name os.path.isdir would also answer False for)
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        return st
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return os.stat(path)


def _is_real_dir(path: Path | str) -> bool:
    """A directory itself, not a link to one (one lstat)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


class Store:
    """The cache directory. `anchor_sha256` is the digest `init` recorded in the (root-owned)
    config: an anchor that no longer has it was replaced on disk (docs/design.md, threat model)."""

    def __init__(self, root: Path, anchor_sha256: str | None = None) -> None:
        """Paths only; `anchor_sha256` None (no pin in the config yet) skips the anchor comparison,
        which `init` then records."""
        self.root = Path(root)
        self.anchor_sha256 = anchor_sha256
        self.anchor_path = self.root / ANCHOR_FILE
        self.state_path = self.root / STATE_FILE
        self.lock_path = self.root / LOCK_FILE
        self.current_link = self.root / CURRENT_LINK
        self.generations_dir = self.root / GENERATIONS_DIR
        # Roots a sync verified but could not commit with the rest (a later step failed),
        # kept because they revoke keys that signed the cached trust (TUF spec 5.3.11).
        self.committed_roots_dir = self.root / COMMITTED_ROOTS_DIR
        # Sealed transparency-log states (checkpoint + tiles per tile log) a bundle carried
        # to this host; re-verified with the log keys of the current trust on every use.
        self.sealed_logs_dir = self.root / SEALED_LOGS_DIR
        # The readers' group the lock's checks worked with, while this writer holds the lock
        # (`readers_gid`); None otherwise, or when they had none to offer.
        self._locked_gid: int | None = None

    # ---- reading ------------------------------------------------------------------
    def is_initialised(self) -> bool:
        """Whether `init` recorded an anchor here; the anchor is what every read verifies from, so
        without it nothing can be trusted."""
        return self.anchor_path.is_file()

    @classmethod
    def of(cls, settings: TrustRepoSettings) -> Store:
        """The configured cache, with the anchor pin the config holds."""
        return cls(settings.local_cache_path, settings.anchor_sha256)

    def read_anchor(self) -> bytes:
        """The trust anchor; refused (exit 3) if its digest is not the one the config pins."""
        return self.read_anchor_identified()[0]

    def read_anchor_identified(self) -> tuple[bytes, FileIdentity]:
        """`read_anchor`, with the identity of the file read (`anchor_is`)."""
        try:
            data, st = read_untrusted_stat(self.anchor_path, MAX_ANCHOR_BYTES, "the trust anchor")
        except UnsafeFileError as exc:
            raise CacheVerificationError(exc.message, hint=AnchorChangedError.default_hint) from None
        except FileNotFoundError:
            raise NotInitialisedError(f"cache {self.root} is not initialised") from None
        except PermissionError:
            raise self.unreadable("permission denied") from None
        if self.anchor_sha256 is not None:
            digest = hashlib.sha256(data).hexdigest()
            if digest != self.anchor_sha256:
                raise AnchorChangedError(
                    f"trust anchor changed on disk: {self.anchor_path} has SHA-256 {digest[:16]}…, "
                    f"the config pins {self.anchor_sha256[:16]}…"
                )
        return data, FileIdentity.of(st)

    def anchor_is(self, identity: FileIdentity) -> bool:
        """Whether the anchor file is still the one `read_anchor_identified` read: one `lstat`
        instead of a read and a hash (decision 13's argument: any write, in place or by rename,
        changes the identity, ctime included, which no writer can set back). A sync reads the
        anchor before it takes the lock and checks this under it (`init --force` may have
        replaced it meanwhile: then it is read, and compared with the pin, again)."""
        try:
            return FileIdentity.of(os.stat(self.anchor_path, follow_symlinks=False)) == identity
        except OSError:
            return False

    def current(self) -> Generation | None:
        """The current generation; `current` must be a relative link to generations/<id>
        (anything else was not written by us and is refused, never followed)."""
        name = self._current_name()
        return None if name is None else Generation(self.generations_dir / name)

    def _current_name(self) -> str | None:
        """The name under generations/ that `current` links to (`current`'s rule), no path built."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a symlink: someone replaced it
                raise CacheVerificationError(
                    f"cache {self.current_link} is not a link into {GENERATIONS_DIR}/"
                ) from None
            raise
        head, _, name = target.partition("/")
        if head != GENERATIONS_DIR or not name or "/" in name or name.startswith("."):
            raise CacheVerificationError(
                f"cache {self.current_link} points outside {GENERATIONS_DIR}/ ({target})"
            )
        return name

    def _current_name_or_none(self) -> str | None:
        """`_current_name`, None for a `current` that is not ours (the lock's checks skip it)."""
        try:
            return self._current_name()
        except CacheVerificationError:
            return None

    def read_state(self, memo: VerificationMemo | None = None) -> CacheState:
        """state.json, or an empty state when it is missing, not JSON or not a regular file: it is
        unsigned, so losing it loses only the floor it held (the generation's own versions stay a
        floor, decision 4); a floor edited into something else is refused (`CacheState.from_json`).

        The file's mtime is part of the record (`touch_state`): when the content records a success
        and the mtime of the file read (fstat of the descriptor read, by decision 18's rule) is
        later than it, an idle sync moved it there, and that moment is the last success and the
        last attempt. Every reader of `last_sync` comes through here (the view, `trust status`,
        `doctor`, the agent). `memo`: a sync's, which remembers what the bytes say (`_parsed_state`)."""
        try:
            raw, st = read_untrusted_stat(self.state_path, MAX_STATE_BYTES, "the cache state")
        except (FileNotFoundError, UnsafeFileError):
            return CacheState()  # informational; the floor it held is then the generation's own
        state = _parsed_state(raw, memo)
        if state.records_success:
            recorded = parse_iso(state.last_sync)
            try:
                touched = from_epoch_ns(st.st_mtime_ns)
            except OverflowError:  # an mtime past datetime's year 9999 (btrfs allows it): not ours
                return state
            if recorded is not None and touched > recorded:
                state.last_sync = state.last_attempt = iso(touched)
        return state

    # ---- writing (callers hold the lock) --------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """One writer at a time; waits up to `timeout` seconds, then fails naming the holder."""

        def busy(holder: str) -> Exception:
            """The refusal after `timeout`: names the holder's pid, so an operator can find it."""
            return LockBusyError(f"cache {self.root} is locked by another writer (pid {holder})")

        from stella_trust._internal.credentials import Owner, acting_as  # writers only (issue 24)

        # A named instance lives inside the default cache (instances/NAME): its owner decides,
        # and nothing below it is made or walked before root has taken that owner's uid.
        top = self._owned_top
        owner = Owner.to_act_as(top, _made(top, CACHE_DIR_MODE))
        if owner is not None:
            adopt_for(self, owner)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(acting_as(owner))
            except OSError as exc:  # a container that will not let root give up its uid
                raise cannot_act_as(self.root, owner, exc) from None
            if top is not self.root:  # the default cache is `top`, made just above
                prepare_instances_dir(self.root)
                _made(self.root, CACHE_DIR_MODE)
            held.enter_context(exclusive_lock(self.lock_path, timeout, busy))
            with os.scandir(self.root) as listing:  # one listing for the three checks below
                entries = {entry.name: entry for entry in listing}
            refuse_planted_links(self.root, entries)
            remove_abandoned_work(self.root, entries)
            self._locked_gid = share_with_readers(self.root, entries, self._current_name_or_none())
            try:
                yield
            finally:
                self._locked_gid = None

    @functools.cached_property
    def _owned_top(self) -> Path:
        """The directory whose owner decides for this cache: the default cache itself, or, for a
        named instance (instances/NAME), the default cache it lives in."""
        return self.root.parent.parent if self.root.parent.name == INSTANCES_DIR else self.root

    # ---- readers' access (decision 17) ---------------------------------------------------
    def readers_gid(self) -> int | None:
        """The readers' group: the one that owns the cache directory (as the lock's checks found
        it, while this writer holds the lock: every file it writes asks)."""
        return self._locked_gid if self._locked_gid is not None else readers_gid(self.root)

    def unreadable(self, detail: str) -> CacheUnreadableError:
        """A reader without access: one line naming the readers' group, never "sync"."""
        return unreadable(self.root, detail)

    def share(self, path: Path) -> None:
        """Make `path` (a file or a whole tree this writer made) readable by the readers'
        group and by nobody else: directories 0750, files 0640."""
        share_tree(path, CACHE_DIR_MODE, CACHE_FILE_MODE, self.readers_gid())

    def _shared_dir(self, path: Path) -> None:
        """A directory of the cache, 0750 and the readers' group whatever the umask (one lstat
        when it stands as it should: every sync asks for generations/)."""
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            _made(path)
            st = None  # made now, or a link: set_access looks again
        set_access(path, CACHE_DIR_MODE, self.readers_gid(), st)

    def _write(self, path: Path, data: bytes, *, durable: bool = True, mtime_ns: int | None = None) -> None:
        """Every cache file: written atomically (readers see old or new bytes, never a mix), 0640
        and group-owned by the readers' group (decision 17)."""
        atomic_write(path, data, CACHE_FILE_MODE, durable=durable, gid=self.readers_gid(), mtime_ns=mtime_ns)

    def write_anchor(self, data: bytes) -> None:
        """Record the trust anchor (`init` only: a sync never replaces it, decision 1); durable,
        since every later read verifies from it."""
        self._write(self.anchor_path, data)

    def write_state(self, state: CacheState, *, durable: bool = False) -> None:
        """Last sync / error / source are informational; `durable` when the rollback floor
        changed (it must survive a power cut as surely as the generation it describes). The new
        file's mtime is the state's `last_attempt` (now when it has none, or it is not a time), so
        "state.json's mtime is the moment of the last recorded attempt" holds for every writer,
        an injected `now` included, and `touch_state` can move it later without a rewrite."""
        data = json.dumps(redact_all(state.to_json()), indent=2).encode() + b"\n"  # group-readable
        attempt = parse_iso(state.last_attempt)
        stamp = epoch_ns(attempt) if attempt is not None else None
        self._write(self.state_path, data, durable=durable, mtime_ns=stamp)

    def touch_state(self, moment: datetime) -> None:
        """Record `moment` as the last success and attempt without rewriting state.json: its mtime
        only (`read_state` reads it back). For a sync that changed nothing but those two moments,
        whose state already records a success (sync.py decides). One journaled inode update: atomic
        for readers, no data written, nothing to tear at a power cut (the last touch may be lost,
        which only makes the last sync read earlier), and the floor's bytes are never touched.
        Under the lock, as the cache's owner, like every write; a link is never followed (one
        planted there gets its own mtime; `read_state` refuses it anyway). OSError (a file this
        user may not stamp, such as one root left) is the caller's cue to rewrite instead."""
        stamp = epoch_ns(moment)
        os.utime(self.state_path, ns=(stamp, stamp), follow_symlinks=False)

    def commit_roots(self, roots: dict[int, bytes]) -> None:
        """Keep verified roots beyond the current generation's (each written durably)."""
        self._shared_dir(self.committed_roots_dir)
        for version, data in roots.items():
            self._write(self.committed_roots_dir / f"{version}.root.json", data)

    def drop_committed_roots(self) -> None:
        """Forget the roots kept beside the generations (decision 16: kept roots must stay ones we
        accept; the next sync fetches any that still apply)."""
        shutil.rmtree(self.committed_roots_dir, ignore_errors=True)

    def committed_roots(self) -> list[Path]:
        """The roots a failed sync kept because they revoke keys that signed the cached trust (TUF
        spec 5.3.11); every read walks the anchor's chain through them."""
        if not self.committed_roots_dir.is_dir():
            return []
        return sorted(self.committed_roots_dir.glob("*.root.json"))

    def reset(self) -> None:
        """Forget all cached trust (used when `init --force` replaces the anchor)."""
        shutil.rmtree(self.committed_roots_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.current_link.unlink()
        shutil.rmtree(self.generations_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    def begin(self, base: Generation | None) -> Generation:
        """A private working copy of `base` (hard links), or an empty one.

        The spare left by an idle sync is reused instead of copying again: it is only a
        starting point (python-tuf re-verifies what it loads, and a changed copy is fully
        re-verified before commit), so a stale spare costs a download, never trust.
        """
        self._shared_dir(self.generations_dir)
        generations = os.fspath(self.generations_dir)  # names, not path objects: every sync
        name = f"{generations}/{WORK_PREFIX}{secrets.token_hex(6)}"
        spare = f"{generations}/{SPARE_DIR}"
        if base is None:
            shutil.rmtree(spare, ignore_errors=True)
        elif _is_real_dir(spare):
            os.rename(spare, name)
            keep_only_our_kinds(name)
            return Generation(Path(name))
        work = Path(name)
        if base is not None and base.path.is_dir():
            shutil.copytree(base.path, work, symlinks=True, copy_function=os.link)
            keep_only_our_kinds(work)
        else:
            (work / "metadata").mkdir(parents=True)
        (work / "targets").mkdir(exist_ok=True)
        return Generation(work)

    def discard(self, work: Generation) -> None:
        """Drop a working copy after any failure: nothing refused is persisted (decision 16), and
        the current generation was never touched."""
        shutil.rmtree(work.path, ignore_errors=True)

    def scratch_dir(self, purpose: str) -> Path:
        """A private directory on the cache's filesystem (so files can be hard-linked in);
        removed by the caller, or by the next lock holder if the process dies."""
        self._shared_dir(self.generations_dir)
        return Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{purpose}-", dir=self.generations_dir))

    def keep_as_spare(self, work: Generation) -> None:
        """After an idle sync: the working copy equals `current`; keep it for the next sync."""
        spare = os.path.join(self.generations_dir, SPARE_DIR)
        if os.path.lexists(spare):  # `begin` took it; only a writer killed in between leaves one
            shutil.rmtree(spare, ignore_errors=True)
        os.rename(work.path, spare)

    def commit(self, work: Generation) -> Generation:
        """Make `work` durable, then switch `current` to it in one rename.

        Files hard-linked from the current generation were made durable when it was
        committed, so only what is new in `work` is fsynced (and every directory)."""
        try:
            previous = self.current()
        except CacheVerificationError:
            previous = None  # not ours (a directory or a stray link): replaced below
        held = file_ids(previous.path) if previous is not None else frozenset()
        # python-tuf writes its files 0600: readers get them 0640, group-owned, like the rest
        share_tree(work.path, CACHE_DIR_MODE, CACHE_FILE_MODE, self.readers_gid(), held)
        fsync_tree(work.path, held)
        final = self.generations_dir / f"{self.next_sequence()}-{secrets.token_hex(3)}"
        os.rename(work.path, final)
        link_tmp = self.root / f".{CURRENT_LINK}.{secrets.token_hex(4)}"
        os.symlink(os.path.join(GENERATIONS_DIR, final.name), link_tmp)
        if self.current_link.is_dir() and not self.current_link.is_symlink():
            shutil.rmtree(self.current_link)  # not ours: a directory put in place of the link
        os.replace(link_tmp, self.current_link)
        fsync_dir(self.generations_dir)
        fsync_dir(self.root)
        keep = {final.name}
        if previous is not None:
            keep.add(previous.path.name)  # readers may still be inside it
        self._prune(keep)
        history = final / "metadata" / "root_history"
        # kept roots now part of the generation itself are dropped
        remove_entries(self.committed_roots_dir, lambda name: (history / name).is_file())
        return Generation(final)

    def generations(self) -> list[Generation]:
        """Every finished generation kept, oldest first, by commit sequence (never by a
        clock: two commits in one clock instant, or a clock stepped back, must still order)."""
        if not self.generations_dir.is_dir():
            return []
        found = [
            (sequence, path)
            for path in self.generations_dir.iterdir()
            if (sequence := generation_sequence(path.name)) is not None and not path.is_symlink()
        ]
        return [Generation(path) for _, path in sorted(found)]

    def next_sequence(self) -> int:
        """One more than the newest generation kept (the current one is always kept)."""
        kept = self.generations()
        return (generation_sequence(kept[-1].path.name) or 0) + 1 if kept else 1

    def _prune(self, keep: set[str]) -> None:
        """Remove every finished generation except `keep` (scratch entries start with '.')."""
        remove_entries(self.generations_dir, lambda name: not name.startswith(".") and name not in keep)
