"""The targets a sync holds, as python-tuf answers for them (sync.py's selection source).

`SessionTargets` is the policy's source during one sync: target info from the session's Updater
(TUF spec 5.6.7 walks the delegations), bytes downloaded into the working copy unless the copy
there already has the signed length and hashes (TUF spec 5.7.3), each answer asked once per
name and sync, and what this process proved remembered in the caller's memo (decision 13).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust._internal.fs import read_untrusted
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.policy.selection import TargetSelection
from stella_trust._internal.policy.servicemap import parse_service_map, referenced_targets
from stella_trust._internal.store import Generation
from stella_trust._internal.tuf.offline import MAX_METADATA_FILE, check_target_file
from stella_trust._internal.tuf.updater import RepositorySession
from stella_trust._internal.tuf.workcopy import held_names, listed_names


class HeldNames:
    """The targets of the generation being replaced, listed when iterated: the selection asks only
    when a pin is missing (a retired pin or a typo), so an idle sync does not list the held
    generation's targets directory for nothing."""

    def __init__(self, base: Generation | None) -> None:
        """Nothing is read yet."""
        self.base = base

    def __iter__(self) -> Iterator[str]:
        """The held names, read now (`workcopy.held_names`)."""
        return iter(held_names(self.base))


class SessionTargets(TargetSelection):
    """Targets through python-tuf: info from the Updater, bytes downloaded unless cached."""

    def __init__(
        self,
        session: RepositorySession,
        work: Generation,
        memo: VerificationMemo,
        *,
        force: bool,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Stem-matching names are read lazily, once per sync (`names`)."""
        super().__init__()
        self.session = session
        self.work = work
        self.memo = memo
        self.force = force
        self.should_stop = should_stop
        self.downloaded: list[str] = []
        self._names: list[str] | None = None
        self._found: dict[str, TargetFile | None] = {}

    def find(self, name: str) -> TargetFile | None:
        """Target info as python-tuf's walk of the delegations finds it (TUF spec 5.6.7): only that
        decides whether a target exists. Asked once per name and sync: the selection asks for the
        same names several times (is it offered, look it up, pull it), and one Updater's walk after
        its refresh always answers the same. At most a few dozen answers are kept (a legacy
        repository's marks are read by asking for every listed name)."""
        if name in self._found:
            return self._found[name]
        info = self.session.find(name)
        if len(self._found) < 64:
            self._found[name] = info
        return info

    def names(self) -> list[str]:
        """Candidate names for stem matching; the TargetFile itself always comes from python-tuf."""
        if self._names is None:
            names: dict[str, None] = {}
            top = os.fspath(self.work.metadata_dir)  # names, not path objects: every sync asks
            roles = sorted(name for name in os.listdir(top) if name.endswith(".json"))
            for role in roles:
                if role not in ("root.json", "timestamp.json", "snapshot.json"):
                    names.update(dict.fromkeys(listed_names(os.path.join(top, role), self.memo)))
            self._names = list(names)
        return self._names

    def forget_names(self) -> None:
        """Drop the listing read for stem matching: a large repository's names are not kept past
        selection."""
        self._names = None
        self._found.clear()

    def read_stored(self, path: Path | str) -> bytes:
        """A stored target read back by fs.py's rule (decision 18), bounded like a metadata file:
        the service map must be parsed to learn what it references."""
        return read_untrusted(path, MAX_METADATA_FILE)

    def service_map_references(self, name: str, info: TargetFile, environment: str | None) -> list[str]:
        """The selection's answer, remembered in the caller's memo under the map's signed length and
        hashes and the environment: the bytes stored have them (checked or downloaded by `pull`,
        TUF spec 5.7.3), and what they reference is a function of those bytes alone, so the agent
        parses its service map once per publication, not every interval (decision 13). Only an
        answer is remembered: a malformed map is refused on every sync."""
        path = self.pull(name, info)
        key = (name, info.length, tuple(sorted(info.hashes.items())), environment)
        known = self.memo.service_map_references.get(key)
        if known is None:
            known = tuple(referenced_targets(parse_service_map(self.read_stored(path), name), environment))
            self.memo.service_map_references.put(key, known)
        return list(known)

    def store(self, name: str, info: TargetFile) -> str:
        """Download a target into the working copy unless a verified copy is already there; a stop
        request is honoured between targets. The path is a name, not a path object: every sync
        checks each target it holds."""
        if self.should_stop is not None and self.should_stop():
            raise errors.SyncInterrupted("Sync interrupted")
        path = self.work.target_file(name)
        if not self.force and self._checked(info, path):
            return path
        if self.session.ensure(info, Path(path), force=self.force, scratch_dir=self.work.path):
            self.downloaded.append(name)
        return path

    def _checked(self, info: TargetFile, path: str) -> bool:
        """Whether the copy at `path` has the signed length and hashes (TUF spec 5.7.3): python-tuf's
        `verify_length_and_hashes`, as its `find_cached_target` calls it, on the file opened by
        decision 18's rule, and remembered under the file's identity in the caller's memo
        (`offline.check_target_file`, decision 13's argument): an idle sync reuses the spare's
        files, whose identity holds still, so the agent hashes each target once, not every
        interval. Any other answer (absent, edited, a link) is python-tuf's to settle
        (`session.ensure`: checked again, downloaded when it differs)."""
        try:
            check_target_file(info, path, memo=self.memo)
        except (tuf_exceptions.LengthOrHashMismatchError, OSError, errors.UnsafeFileError):
            return False
        return True
