"""An idle sync records its moment as state.json's mtime instead of rewriting it (issue 24, decision
4's note on state.json): the bytes, the inode and the rollback floor stay as the last content write
left them, and every reader of `last_sync` (read_state, the view, open_trust, doctor) reports the
touched moment. Content writes stamp the mtime to their own `last_attempt`, so a failure, a changed
sync and an injected `now` earlier than the file read back exactly as recorded."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stella_trust._internal.cachestate import CacheState
from stella_trust._internal.diagnose.local import check_last_sync
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.reader import load_view, open_trust
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.timefmt import epoch_ns, iso, utcnow
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import CacheVerificationError, RepositoryUnreachableError, RollbackError
from tests.unit.simulator import Host, RepositoryFetcher, Simulated

Snapshot = tuple[bytes, int, int]  # state.json's bytes, inode, mtime_ns


def _snapshot(store: Store) -> Snapshot:
    st = os.stat(store.state_path)
    return store.state_path.read_bytes(), st.st_ino, st.st_mtime_ns


def _start(host: Host, demo: DemoRepository) -> datetime:
    """`init` and a first (changing) sync at an injected moment on a whole second; returns it."""
    settings, store = host
    store.write_anchor(demo.repo.root_bytes(1))
    first = utcnow().replace(microsecond=0) - timedelta(hours=1)
    assert sync(settings, store, now=first, fetcher=RepositoryFetcher(demo.repo)).changed
    return first


def _idle(host: Host, demo: DemoRepository, moment: datetime, memo: VerificationMemo | None = None) -> None:
    settings, store = host
    assert not sync(settings, store, now=moment, fetcher=RepositoryFetcher(demo.repo), memo=memo).changed


def test_idle_syncs_move_only_the_mtime_and_every_reader_reports_the_last(
    host: Host, simulated: Simulated, tmp_path: Path
) -> None:
    settings, store = host
    demo, _ = simulated
    first = _start(host, demo)
    written, inode, mtime = _snapshot(store)
    assert mtime == epoch_ns(first)  # the content write stamps its own last_attempt
    assert json.loads(written)["last_sync"] == iso(first)
    memo = VerificationMemo()  # one reader's memo across the syncs: a touch must not read as stale
    assert load_view(settings, store, first, memo).last_sync == first
    moments = [first + timedelta(minutes=7 * k, microseconds=123457 * k) for k in range(1, 6)]
    for moment in moments:
        _idle(host, demo, moment)
        assert _snapshot(store) == (written, inode, epoch_ns(moment))  # bytes and inode kept
        state = store.read_state()
        assert state.last_sync == state.last_attempt == iso(moment)
        assert load_view(settings, store, moment, memo).last_sync == moment
    last = moments[-1]
    public = open_trust(store.root, config_path=tmp_path / "absent.yaml", now=last)
    assert public.last_sync == last and public.to_json()["last_sync"] == iso(last)
    doctor = check_last_sync(settings, store, last + timedelta(minutes=1))
    assert doctor.state == "ok" and iso(last) in doctor.detail


def test_a_failure_after_idle_syncs_is_written_and_keeps_the_last_touched_success(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    first = _start(host, demo)
    touched = first + timedelta(minutes=30, microseconds=250)
    _idle(host, demo, first + timedelta(minutes=10))
    _idle(host, demo, touched)
    before = _snapshot(store)
    down = RepositoryFetcher(demo.repo)
    down.overrides["metadata/timestamp.json"] = 503
    failed_at = touched + timedelta(minutes=10)
    with pytest.raises(RepositoryUnreachableError):
        sync(settings, store, now=failed_at, fetcher=down)
    after = _snapshot(store)
    assert after[1] != before[1] and after[0] != before[0]  # a content write: a new file
    assert after[2] == epoch_ns(failed_at)
    document = json.loads(after[0])
    assert document["last_sync"] == iso(touched)  # the touched success, carried into the content
    assert document["last_attempt"] == iso(failed_at) and document["last_error"]
    state = store.read_state()
    assert (state.last_sync, state.last_attempt) == (iso(touched), iso(failed_at)) and state.last_error
    assert load_view(settings, store, failed_at).last_sync == touched
    doctor = check_last_sync(settings, store, failed_at)
    assert doctor.state == "warn" and "the last sync failed" in doctor.detail

    healed = failed_at + timedelta(minutes=5)
    _idle(host, demo, healed)  # the repository answers again: nothing new, but the error is cleared
    content, inode, mtime = _snapshot(store)
    assert inode != after[1] and mtime == epoch_ns(healed)
    document = json.loads(content)
    assert document["last_error"] is None and document["consecutive_failures"] == 0
    assert document["last_sync"] == document["last_attempt"] == iso(healed)
    later = healed + timedelta(minutes=5)
    _idle(host, demo, later)  # a success recorded again: back to touching
    assert _snapshot(store) == (content, inode, epoch_ns(later))
    assert store.read_state().last_sync == iso(later)


def test_an_injected_now_earlier_than_the_record_is_written_and_read_back(
    host: Host, simulated: Simulated
) -> None:
    settings, store = host
    demo, _ = simulated
    first = _start(host, demo)
    _idle(host, demo, first + timedelta(minutes=20))
    held = _snapshot(store)
    for earlier in (first + timedelta(minutes=10), first - timedelta(hours=2)):  # below mtime, below content
        _idle(host, demo, earlier)
        content, inode, mtime = _snapshot(store)
        assert inode != held[1] and mtime == epoch_ns(earlier)  # rewritten: an mtime cannot go back
        assert json.loads(content)["last_sync"] == iso(earlier)
        state = store.read_state()
        assert state.last_sync == state.last_attempt == iso(earlier)
        assert load_view(settings, store, earlier).last_sync == earlier
        held = (content, inode, mtime)


def test_the_floor_is_never_rewritten_by_idle_syncs_and_still_refuses_a_rolled_back_cache(
    host: Host, simulated: Simulated
) -> None:
    """test_hardening_in_process's rollback, after idle syncs that only touched state.json: the
    floor recorded at the last commit is the same bytes and still refuses the older generation,
    at the idle sync and at every read, in one line with its hint; the newest trust comes back."""
    settings, store = host
    demo, _ = simulated
    first = _start(host, demo)
    old_files = RepositoryFetcher(demo.repo).files()
    demo.switch_to_rekor_v2()
    committed = first + timedelta(minutes=5)
    assert sync(settings, store, now=committed, fetcher=RepositoryFetcher(demo.repo)).changed
    content, inode, _ = _snapshot(store)
    floor = json.loads(content)["floor"]
    assert floor and floor == {role: entry.to_json() for role, entry in store.read_state().floor.items()}
    newest = load_view(settings, store, committed).roles
    for k in range(1, 4):
        _idle(host, demo, committed + timedelta(minutes=k))
    assert _snapshot(store)[:2] == (content, inode)
    previous = sorted(p for p in store.generations_dir.iterdir() if not p.name.startswith("."))[0]
    os.unlink(store.current_link)
    os.symlink(f"generations/{previous.name}", store.current_link)  # the cache rolled back on disk
    frozen = RepositoryFetcher(demo.repo)
    frozen.overrides.update(old_files)  # a mirror serving the same old metadata: the sync is idle
    frozen.overrides.update({f"metadata/{v}.root.json": 404 for v in range(2, 4)})
    refused_at = committed + timedelta(minutes=10)
    with pytest.raises(RollbackError, match="Rollback refused") as caught:
        sync(settings, store, now=refused_at, fetcher=frozen)
    assert "\n" not in caught.value.message and caught.value.hint
    with pytest.raises(CacheVerificationError, match="older trust than this host already committed"):
        load_view(settings, store, refused_at)
    state = store.read_state()
    assert json.loads(store.state_path.read_bytes())["floor"] == floor  # the failure kept the floor
    assert state.last_error and state.last_sync == iso(committed + timedelta(minutes=3))
    restored = committed + timedelta(minutes=15)
    assert sync(settings, store, now=restored, fetcher=RepositoryFetcher(demo.repo)).changed
    view = load_view(settings, store, restored)
    assert {role: meta.version for role, meta in view.roles.items()} == {
        role: meta.version for role, meta in newest.items()
    }
    assert view.usable and view.last_sync == restored


def test_only_a_recorded_success_is_moved_by_the_mtime(tmp_path: Path) -> None:
    """A failure record, a content without a success, or an mtime not later than the record reads
    as written; the mtime moves only a success (and then both moments, to the microsecond)."""
    store = Store(tmp_path / "cache")
    at = datetime.fromisoformat("2026-12-01T10:00:00+00:00")
    later = epoch_ns(at + timedelta(hours=1, microseconds=5))
    store.write_state(CacheState(last_sync=iso(at), last_attempt=iso(at)))
    assert os.stat(store.state_path).st_mtime_ns == epoch_ns(at)
    assert store.read_state().last_sync == iso(at)  # mtime == record: the content stands
    os.utime(store.state_path, ns=(later, later))
    moved = store.read_state()
    assert moved.last_sync == moved.last_attempt == "2026-12-01T11:00:00.000005Z"
    failed = CacheState(last_sync=iso(at), last_attempt=iso(at + timedelta(minutes=1)), last_error="down")
    store.write_state(failed)
    os.utime(store.state_path, ns=(later, later))
    assert store.read_state().last_sync == iso(at)  # a failure is never moved
    store.write_state(CacheState())  # no attempt recorded: stamped by the clock, nothing to move
    assert abs(os.stat(store.state_path).st_mtime_ns - epoch_ns(utcnow())) < 60 * 10**9
    assert store.read_state().last_sync is None


@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root to own files")
def test_a_state_file_this_writer_may_not_stamp_is_rewritten_instead(tmp_path: Path) -> None:
    """The writer acts as the cache's owner (decision 17); a state.json another user owns (not root:
    root's leftovers are adopted at the lock) cannot have its mtime set by the owner, so the idle
    success is written as content, as before, and reads back with its moment. The owner's uid is
    taken with seteuid, as `credentials.acting_as` does (which keeps root's uid here when the
    owner cannot read this interpreter, e.g. pyenv under /root); everything the block runs is
    imported already."""
    import shutil
    import tempfile

    from stella_trust._internal.sync import _touch_or_write

    owner, other = 61001, 61002
    home = Path(tempfile.mkdtemp(prefix="stella-idle-state-", dir="/tmp"))
    try:
        home.chmod(0o755)
        store = Store(home / "cache")
        store.root.mkdir(mode=0o750)
        at = datetime.fromisoformat("2026-12-01T10:00:00+00:00")
        store.write_state(CacheState(last_sync=iso(at), last_attempt=iso(at)))
        os.chown(store.root, owner, owner)
        os.chown(store.state_path, other, other)
        later = at + timedelta(hours=1)
        state = store.read_state()
        state.last_sync = state.last_attempt = iso(later)
        os.setegid(owner)
        os.seteuid(owner)
        try:
            with pytest.raises(PermissionError):
                store.touch_state(later)
            _touch_or_write(store, state, later)
        finally:
            os.seteuid(0)
            os.setegid(0)
        st = os.stat(store.state_path)
        assert st.st_uid == owner and st.st_mtime_ns == epoch_ns(later)  # a new file, the owner's
        assert json.loads(store.state_path.read_bytes())["last_sync"] == iso(later)
        assert store.read_state().last_sync == iso(later)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_state_json_is_parsed_once_per_content_and_every_caller_gets_its_own_copy(tmp_path: Path) -> None:
    """What state.json's bytes say is remembered in a sync's memo by the exact bytes (an idle sync
    moves only the mtime): the same bytes answer an equal state without parsing, a caller changing
    its state (the sync stamps moments, replaces pins, mirrors' records) changes nothing the next
    caller gets, other bytes are parsed, an edited floor is refused every time (never remembered),
    and a read without a memo parses as ever."""
    from stella_trust._internal import cachestate
    from stella_trust._internal.cachestate import MirrorHealth, RoleFloor

    store = Store(tmp_path / "cache")
    store.root.mkdir()
    original = CacheState(
        last_sync="2026-01-01T00:00:00Z",
        last_attempt="2026-01-01T00:00:00Z",
        source={"kind": "sync", "url": "https://tuf.example", "at": "2026-01-01T00:00:00Z"},
        floor={"timestamp": RoleFloor(7, ("k1",))},
        retired_pins=["old.pub"],
        legacy_expired={"abc": "2026-01-01T00:00:00Z"},
        mirrors=[MirrorHealth("https://mirror.example", last_success="2026-01-01T00:00:00Z")],
    )
    store.write_state(original)
    os.utime(store.state_path, ns=(0, 0))  # an mtime before the record: the content alone speaks
    memo = VerificationMemo()
    first = store.read_state(memo)
    assert first == original
    first.last_sync = "2026-02-02T00:00:00Z"
    first.source["kind"] = "import"
    first.floor["snapshot"] = RoleFloor(1, ())
    first.retired_pins.append("another.pub")
    first.legacy_expired.clear()
    first.mirrors[0].last_error = "refused"

    parses = 0
    real = cachestate.CacheState.from_json

    def counted(data: dict[str, object]) -> CacheState:
        nonlocal parses
        parses += 1
        return real(data)

    cachestate.CacheState.from_json = counted  # type: ignore[method-assign,assignment]
    try:
        for _ in range(5):
            again = store.read_state(memo)
            assert again == original and again is not first
            assert again.mirrors[0] is not first.mirrors[0]
        assert parses == 0  # the same bytes: not parsed again
        assert store.read_state() == original and parses == 1  # no memo: parsed
        other = CacheState(last_error="unreachable", consecutive_failures=2)
        store.write_state(other)
        assert store.read_state(memo) == other and parses == 2
        edited = {**original.to_json(), "floor": {"root": {"version": "7"}}}
        store.state_path.write_text(json.dumps(edited))
        for _ in range(2):
            with pytest.raises(CacheVerificationError, match="rollback floor for 'root' is malformed"):
                store.read_state(memo)
        assert parses == 4
        for junk in ("not json", "[1]"):
            store.state_path.write_text(junk)
            assert store.read_state(memo) == CacheState()
    finally:
        cachestate.CacheState.from_json = real  # type: ignore[method-assign]
