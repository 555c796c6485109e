"""What every sync does around python-tuf, made cheap without changing what it decides (issue 24):
the working copy's kinds, the stored names, the tree comparison, the reported versions, the lock
and the root walk remembered by identities (decision 14). Each test pins the decision the faster
code must still make, including the refusals."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stella_trust._internal import synctargets
from stella_trust._internal.fs import exclusive_lock
from stella_trust._internal.generation import Generation, keep_only_our_kinds, target_filename
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.tuf import offline
from stella_trust._internal.tuf.workcopy import same_tree, versions_of
from stella_trust.demo.repository import SERVICE_MAP, DemoRepository
from stella_trust.errors import CacheVerificationError, ServiceMapError, UnsafeFileError
from tests.unit.simulator import RepositoryFetcher

ROOTS = 8


def test_the_working_copy_keeps_only_directories_files_and_python_tufs_root_link(tmp_path: Path) -> None:
    work = tmp_path / "work"
    history = work / "metadata" / "root_history"
    history.mkdir(parents=True)
    (history / "1.root.json").write_text("root")
    (work / "metadata" / "root.json").symlink_to("root_history/1.root.json")  # python-tuf's own: kept
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not ours")
    (work / "metadata" / "timestamp.json").symlink_to(outside / "secret")  # planted link: dropped
    os.mkfifo(work / "metadata" / "snapshot.json")  # a FIFO would hang python-tuf: dropped
    (work / "targets" / "nested").mkdir(parents=True)
    (work / "targets" / "nested" / "kept.pub").write_text("kept")
    (work / "targets" / "into-outside").symlink_to(outside)  # a link to a directory: never followed

    keep_only_our_kinds(work)

    left = sorted(str(path.relative_to(work)) for path in work.rglob("*"))
    assert left == [
        "metadata",
        "metadata/root.json",
        "metadata/root_history",
        "metadata/root_history/1.root.json",
        "targets",
        "targets/nested",
        "targets/nested/kept.pub",
    ]
    assert (outside / "secret").read_text() == "not ours"  # nothing removed through a link


def test_a_root_link_python_tuf_did_not_make_is_dropped(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "metadata").mkdir(parents=True)
    (tmp_path / "elsewhere.json").write_text("{}")
    (work / "metadata" / "root.json").symlink_to(tmp_path / "elsewhere.json")
    keep_only_our_kinds(work)
    assert not (work / "metadata" / "root.json").is_symlink()
    assert (tmp_path / "elsewhere.json").exists()


def test_stored_names_are_decoded_and_a_foreign_entry_is_refused(tmp_path: Path) -> None:
    generation = Generation(tmp_path / "generation")
    assert generation.stored_target_names() == []  # no targets directory: nothing held
    generation.targets_dir.mkdir(parents=True)
    for name in ("b/key.pub", ".hidden", "a.json"):
        generation.target_path(name).write_text(name)
    assert generation.stored_target_names() == [".hidden", "a.json", "b/key.pub"]
    (generation.targets_dir / "not%2fencoded%2Fthis-way").write_text("planted")
    with pytest.raises(CacheVerificationError, match="unexpected entry in the cache"):
        generation.stored_target_names()
    assert target_filename(".hidden").startswith("%2E")


def test_trees_are_the_same_only_with_the_same_files_and_bytes(tmp_path: Path) -> None:
    left = tmp_path / "left"
    (left / "metadata" / "root_history").mkdir(parents=True)
    (left / "metadata" / "root_history" / "1.root.json").write_text("root one")
    (left / "metadata" / "root.json").symlink_to("root_history/1.root.json")
    (left / "targets").mkdir()
    (left / "targets" / "key.pub").write_text("key")
    right = tmp_path / "right"
    shutil.copytree(left, right, symlinks=True, copy_function=os.link)  # a sync's working copy
    assert same_tree(left, right)

    rewritten = right / "metadata" / "root_history" / "1.root.json"  # python-tuf re-persists it
    rewritten.unlink()
    rewritten.write_text("root one")
    assert same_tree(left, right)  # another inode, the same bytes

    rewritten.unlink()
    rewritten.write_text("root One")
    assert not same_tree(left, right)
    rewritten.unlink()
    os.link(left / "metadata" / "root_history" / "1.root.json", rewritten)

    (right / "targets" / "extra.pub").write_text("extra")
    assert not same_tree(left, right)
    (right / "targets" / "extra.pub").unlink()
    (right / "targets" / "key.pub").rename(right / "targets" / "other.pub")
    assert not same_tree(left, right)  # as many entries, another name
    (right / "targets" / "other.pub").rename(right / "targets" / "key.pub")

    rewritten.unlink()
    rewritten.write_text("root one, longer")  # the same start, more bytes
    assert not same_tree(left, right)
    rewritten.unlink()
    os.link(left / "metadata" / "root_history" / "1.root.json", rewritten)

    (right / "metadata" / "root.json").unlink()
    (right / "metadata" / "root.json").symlink_to("root_history/2.root.json")
    assert not same_tree(left, right)  # a link naming another root
    (right / "metadata" / "root.json").unlink()
    shutil.copy(left / "metadata" / "root_history" / "1.root.json", right / "metadata" / "root.json")
    assert not same_tree(left, right)  # a file where the other holds a link
    assert same_tree(left, left)


def test_versions_are_those_python_tuf_left_and_a_changed_file_is_read_again(
    host: tuple[TrustRepoSettings, Store], simulated: tuple[DemoRepository, RepositoryFetcher]
) -> None:
    settings, store = host
    demo, fetcher = simulated
    store.write_anchor(demo.root_path.read_bytes())
    memo = VerificationMemo()
    first = sync(settings, store, fetcher=fetcher, memo=memo)
    current = store.current()
    assert current is not None
    assert versions_of(current.metadata_dir, memo) == first.versions == versions_of(current.metadata_dir)

    demo.repo.resign_timestamp()  # a renewal: a new timestamp version, nothing else
    renewed = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert renewed.changed and renewed.versions["timestamp"] == first.versions["timestamp"] + 1
    idle = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert not idle.changed and idle.versions == renewed.versions  # what the new files say

    demo.rotate("root")
    rotated = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert rotated.versions["root"] == first.versions["root"] + 1
    again = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert not again.changed and again.versions == rotated.versions


def test_a_root_link_naming_no_version_is_refused(tmp_path: Path) -> None:
    metadata = tmp_path / "metadata"
    (metadata / "root_history").mkdir(parents=True)
    (metadata / "root_history" / "x.root.json").write_text("{}")
    (metadata / "root.json").symlink_to("root_history/x.root.json")
    with pytest.raises(CacheVerificationError, match="names no root version"):
        versions_of(metadata)


def test_the_lock_file_holds_exactly_the_holders_pid(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.write_text("99999999999\n")  # a longer pid left by an earlier holder

    def busy(holder: str) -> Exception:
        return RuntimeError(holder)

    with exclusive_lock(lock, 1, busy):
        assert lock.read_text() == f"{os.getpid()}\n"
    lock.write_text("1\n")  # a shorter one: written over, nothing of it left
    with exclusive_lock(lock, 1, busy):
        assert lock.read_text() == f"{os.getpid()}\n"


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[DemoRepository, Path]:
    demo = DemoRepository(tmp_path / "repository")
    for _ in range(ROOTS - 1):
        demo.rotate("root")
    history = tmp_path / "history"
    history.mkdir()
    for version in range(2, ROOTS + 1):
        (history / f"{version}.root.json").write_bytes(demo.repo.root_bytes(version))
    return demo, history


def test_a_remembered_walk_never_reaches_past_the_files_on_disk(rotated: tuple[DemoRepository, Path]) -> None:
    demo, history = rotated
    anchor = demo.repo.root_bytes(1)
    memo = VerificationMemo()
    assert offline.verify_root_chain(anchor, history, memo=memo)[0].signed.version == ROOTS
    (history / "5.root.json").unlink()  # the chain on disk now ends at v4
    newest, chain = offline.verify_root_chain(anchor, history, memo=memo)
    assert newest.signed.version == 4 and len(chain) == 4
    fresh, _ = offline.verify_root_chain(anchor, history, memo=VerificationMemo())
    assert fresh.signed.version == 4  # what a fresh process finds


def test_a_copy_of_the_chain_is_read_again_and_still_proven(
    rotated: tuple[DemoRepository, Path], tmp_path: Path
) -> None:
    demo, history = rotated
    anchor = demo.repo.root_bytes(1)
    memo = VerificationMemo()
    _, chain = offline.verify_root_chain(anchor, history, memo=memo)
    copy = tmp_path / "copy"
    shutil.copytree(history, copy)  # other identities, the same bytes (another generation's)
    newest, again = offline.verify_root_chain(anchor, copy, memo=memo)
    assert newest.signed.version == ROOTS and again == chain


def test_the_newest_root_edited_after_a_remembered_walk_is_refused_and_the_held_trust_kept(
    host: tuple[TrustRepoSettings, Store], rotated: tuple[DemoRepository, Path]
) -> None:
    """Through the sync: the walk is remembered (the idle syncs compare identities only), then the
    held generation's newest root is edited in place: every later walk in this process reads it
    again and refuses it in one line; a sync then rebuilds the trust from the repository."""
    settings, store = host
    demo, _ = rotated
    store.write_anchor(demo.repo.root_bytes(1))
    memo = VerificationMemo()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)  # idle: walk remembered
    current = store.current()
    assert current is not None
    victim = current.metadata_dir / "root_history" / f"{ROOTS}.root.json"
    data = bytearray(victim.read_bytes())
    position = data.index(b'"version"')
    data[position + 1] = ord("V")  # same size: an unknown field, the signatures break
    before = victim.stat()
    while victim.stat().st_ctime_ns == before.st_ctime_ns:  # a new ctime tick (coarse clocks)
        os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    with victim.open("r+b") as handle:
        handle.write(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back; ctime cannot be
    with pytest.raises(CacheVerificationError, match=rf"root v{ROOTS}"):
        offline.verify_generation(current, store.read_anchor(), store.committed_roots_dir, memo=memo)
    result = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert result.changed and result.versions["root"] == ROOTS  # rebuilt from the repository
    rebuilt = store.current()
    assert rebuilt is not None
    offline.verify_generation(
        rebuilt, store.read_anchor(), store.committed_roots_dir, memo=VerificationMemo()
    )


def _edit_in_place(victim: Path) -> None:
    """Same size, other bytes (an unknown field: the signatures break), mtime set back: only the
    ctime tells, as decision 13's argument requires."""
    data = bytearray(victim.read_bytes())
    position = data.index(b'"version"')
    data[position + 1] = ord("V")
    _rewrite_keeping_mtime(victim, bytes(data))


def _rewrite_keeping_mtime(victim: Path, data: bytes) -> None:
    """`data` written over `victim` in place (same inode), its mtime set back after a new ctime
    tick (coarse clocks), so only the ctime tells."""
    before = victim.stat()
    while victim.stat().st_ctime_ns == before.st_ctime_ns:
        os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    with victim.open("r+b") as handle:
        handle.write(data)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_an_intermediate_root_edited_after_the_proof_is_caught_by_the_next_read_and_healed(
    host: tuple[TrustRepoSettings, Store],
    rotated: tuple[DemoRepository, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sync starts python-tuf from the newest root this process proved, looking at that root's
    file only (decision 14): an intermediate root edited on disk does not change where it starts.
    Every read still walks every root file: this process's next read refuses the edit in one line,
    which makes the next sync walk from the anchor again, and python-tuf fetches that root anew."""
    from stella_trust._internal.reader import load_view
    from stella_trust._internal.tuf import keptroots, updater

    settings, store = host
    demo, _ = rotated
    store.write_anchor(demo.repo.root_bytes(1))
    memo = VerificationMemo()  # the agent's, for its life
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert load_view(settings, store, memo=memo).usable
    current = store.current()
    assert current is not None
    _edit_in_place(current.metadata_dir / "root_history" / "4.root.json")  # shared with the spare

    starts: list[bytes] = []
    real = keptroots.newest_start

    def recording(*args: object) -> bytes:
        started = real(*args)  # type: ignore[arg-type]
        starts.append(started)
        return started

    monkeypatch.setattr(keptroots, "newest_start", recording)
    idle = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert not idle.changed and starts == [demo.repo.root_bytes(ROOTS)]  # the proven end, as before
    with pytest.raises(CacheVerificationError, match=r"root v4") as refused:
        load_view(settings, store, memo=memo)  # every read walks every root file
    assert refused.value.hint  # one line and a hint, never a traceback
    with pytest.raises(CacheVerificationError, match=r"root v4"):
        load_view(settings, store, memo=VerificationMemo())  # a fresh process refuses it too

    fetched: list[str] = []
    fetcher = RepositoryFetcher(demo.repo)
    real_fetch = fetcher._fetch

    def fetching(url: str) -> object:
        fetched.append(url.rsplit("/", 1)[-1])
        return real_fetch(url)

    monkeypatch.setattr(fetcher, "_fetch", fetching)
    bootstraps: list[int] = []
    real_new = updater.new_updater

    def new_updater(*args: object) -> object:
        made = real_new(*args)  # type: ignore[arg-type]
        bootstraps.append(made._trusted_set.root.version)
        return made

    monkeypatch.setattr(updater, "new_updater", new_updater)
    healed = sync(settings, store, fetcher=fetcher, memo=memo)
    assert bootstraps == [1] and "4.root.json" in fetched  # walked from the anchor, v4 fetched anew
    assert healed.changed and healed.versions["root"] == ROOTS
    assert load_view(settings, store, memo=memo).usable
    assert load_view(settings, store, memo=VerificationMemo()).usable  # and for a fresh process


def test_a_targets_directory_that_is_a_link_loop_or_a_file_holds_nothing(tmp_path: Path) -> None:
    generation = Generation(tmp_path / "generation")
    generation.path.mkdir()
    generation.targets_dir.symlink_to(generation.targets_dir)  # a loop: as pathlib's is_dir(), none held
    assert generation.stored_target_names() == []
    generation.targets_dir.unlink()
    generation.targets_dir.write_text("a file")
    assert generation.stored_target_names() == []


def _flip_in_place(victim: Path) -> None:
    """One byte changed, same size, mtime set back: only the ctime tells (decision 13's argument)."""
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    _rewrite_keeping_mtime(victim, bytes(data))


def test_a_target_edited_in_place_after_remembered_checks_is_hashed_again_and_restored(
    host: tuple[TrustRepoSettings, Store], tmp_path: Path
) -> None:
    """An idle sync remembers each target's hash check under the file's identity in the agent's memo
    (issue 24): the spare's files hold still, so later idle syncs do not hash them again. A target
    edited in place (same size, mtime set back) has a new identity: the next sync checks it in full,
    python-tuf downloads the signed bytes again and the sync commits them; the edit is never served."""
    from stella_trust._internal.reader import load_view

    settings, store = host
    demo = DemoRepository(tmp_path / "repository")
    store.write_anchor(demo.repo.root_bytes(1))
    memo = VerificationMemo()  # the agent's, for its life
    assert sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo).changed
    for _ in range(2):
        idle = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
        assert not idle.changed and idle.downloaded == []
    current = store.current()
    assert current is not None
    name = "rekor-key-v2.pub"
    _flip_in_place(current.target_path(name))  # shared with the spare, the next sync's start
    with pytest.raises(CacheVerificationError, match=f"target {name}: length or hash mismatch") as refused:
        load_view(settings, store, memo=VerificationMemo())
    assert refused.value.hint
    healed = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert healed.changed and healed.downloaded == [name]
    view = load_view(settings, store, memo=VerificationMemo())
    assert view.usable
    restored = store.current()
    assert restored is not None and restored.target_path(name).read_bytes() == demo.repo.target_data[name]
    again = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert not again.changed and again.downloaded == []


def test_the_anchor_read_before_the_lock_is_read_again_when_its_file_changed(
    tmp_path: Path, rotated: tuple[DemoRepository, Path]
) -> None:
    """A sync reads the anchor before it takes the lock and, under it, uses those bytes only while the
    file is the one read (one lstat, `Store.anchor_is`); an anchor edited in place (same size, mtime
    set back) or replaced meanwhile (`init --force` ran while the sync waited) is read again and
    compared with the pin again: refused in one line."""
    import hashlib

    from stella_trust._internal.sync import _anchor_under_lock
    from stella_trust.errors import AnchorChangedError

    demo, _ = rotated
    anchor = demo.repo.root_bytes(1)
    store = Store(tmp_path / "cache", hashlib.sha256(anchor).hexdigest())
    store.write_anchor(anchor)
    read = store.read_anchor_identified()
    assert read[0] == anchor and store.anchor_is(read[1])
    assert _anchor_under_lock(store, read) == anchor
    _flip_in_place(store.anchor_path)
    assert not store.anchor_is(read[1])
    with pytest.raises(AnchorChangedError, match="trust anchor changed on disk") as refused:
        _anchor_under_lock(store, read)
    assert "\n" not in refused.value.message and refused.value.hint
    store.write_anchor(anchor)  # put back by rename: a new file, read again, and it matches the pin
    assert not store.anchor_is(read[1]) and _anchor_under_lock(store, read) == anchor
    replaced = store.read_anchor_identified()
    store.write_anchor(demo.repo.root_bytes(2))  # another root, as `init --force` would write
    with pytest.raises(AnchorChangedError):
        _anchor_under_lock(store, replaced)


def test_the_service_map_is_parsed_once_per_publication_and_a_malformed_one_refused_every_time(
    host: tuple[TrustRepoSettings, Store],
    simulated: tuple[DemoRepository, RepositoryFetcher],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's memo keeps what a signed service map references under its signed length and
    hashes: five idle syncs parse nothing, a new publication is parsed (and followed), a malformed
    map is refused on each sync with the held trust kept, and the next good one heals the host."""
    settings, store = host
    demo, _ = simulated
    store.write_anchor(demo.root_path.read_bytes())
    parsed: list[str] = []
    real_parse = synctargets.parse_service_map

    def counting(data: bytes, source: str) -> object:
        parsed.append(source)
        return real_parse(data, source)

    monkeypatch.setattr(synctargets, "parse_service_map", counting)
    memo = VerificationMemo()
    first = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert "rekor-key-v1.pub" in first.targets and parsed == [SERVICE_MAP]
    for _ in range(5):
        idle = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
        assert not idle.changed and idle.targets == first.targets
    assert parsed == [SERVICE_MAP]

    demo.switch_to_rekor_v2()  # a new map: other hashes, parsed and followed
    switched = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert switched.changed and switched.targets[SERVICE_MAP] == "service-map"
    assert switched.targets["rekor-key-v2.pub"] in {"referenced", "pinned"}
    assert len(parsed) == 2
    held = store.current()
    assert held is not None

    demo.repo.add_target(SERVICE_MAP, b'["not", "a", "map"]')
    demo.repo.publish()
    for _ in range(2):  # refused on every sync, never remembered
        with pytest.raises(ServiceMapError, match="must be a JSON object"):
            sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert len(parsed) == 4
    assert (now_held := store.current()) is not None and now_held.path == held.path
    view = load_view(settings, store)  # the held trust still serves, the switched map's
    assert view.service_map is not None and "rekor-key-v2" in str(view.service_map.document)

    demo.switch_to_rekor_v2()  # the operator publishes a good map again: healed, no human action
    healed = sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert healed.changed and SERVICE_MAP in healed.targets


def test_the_lock_takes_one_listing_and_still_tidies_refuses_and_shares(
    host: tuple[TrustRepoSettings, Store], simulated: tuple[DemoRepository, RepositoryFetcher]
) -> None:
    """Under the lock, from one listing of the cache directory: a killed writer's temp link and
    working copy are removed, a file where a cache subdirectory belongs is refused in one line
    (the held trust still served), and what readers read is put back to 0640."""
    settings, store = host
    demo, _ = simulated
    store.write_anchor(demo.root_path.read_bytes())
    memo = VerificationMemo()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    (store.root / ".current.dead").symlink_to("generations/nowhere")  # a writer killed mid-commit
    (store.generations_dir / ".work-dead" / "targets").mkdir(parents=True)
    store.state_path.chmod(0o600)
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    assert not os.path.lexists(store.root / ".current.dead")
    assert not (store.generations_dir / ".work-dead").exists()
    assert store.state_path.stat().st_mode & 0o777 == 0o640

    held = store.current()
    assert held is not None
    store.committed_roots_dir.write_text("planted")  # a file where the kept roots' directory belongs
    with pytest.raises(UnsafeFileError, match=r"roots: it is a link or not a directory"):
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    after = store.current()
    assert after is not None and after.path == held.path  # nothing written
    store.committed_roots_dir.unlink()  # the hint followed
    assert load_view(settings, store).usable
    for _ in range(3):
        assert not sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo).changed


@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="root chgrps the cache")
def test_the_readers_group_is_the_one_found_under_the_lock_and_asked_again_after(
    host: tuple[TrustRepoSettings, Store], simulated: tuple[DemoRepository, RepositoryFetcher]
) -> None:
    """A writer keeps the readers' group the lock's checks found while it holds the lock (every
    file it writes asks): what a sync commits is group-owned by it. Once the lock is released the
    group is asked again, so a cache moved to another group is shared with that one by the next
    sync, and the syncs after stay idle."""
    settings, store = host
    demo, _ = simulated
    store.write_anchor(demo.root_path.read_bytes())
    memo = VerificationMemo()
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo)
    first = store.root.stat().st_gid
    with store.lock(5):
        assert store.readers_gid() == first
    readers = first + 4321  # an administrator moves the cache to another readers' group
    os.chown(store.root, -1, readers)
    assert store.readers_gid() == readers  # asked again, not the group held under the lock
    demo.switch_to_rekor_v2()  # the next sync commits: every file it writes is the new group's
    assert sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo).changed
    current = store.current()
    assert current is not None
    written = [current.path, store.state_path, *current.path.rglob("*")]
    # (python-tuf's root.json link keeps its maker's group: a link's own group grants nothing)
    assert [path for path in written if not path.is_symlink() and path.lstat().st_gid != readers] == []
    assert load_view(settings, store).usable
    for _ in range(3):
        assert not sync(settings, store, fetcher=RepositoryFetcher(demo.repo), memo=memo).changed
    assert store.readers_gid() == readers


def test_stored_names_read_as_percent_encoding_says_with_or_without_the_plain_name_shortcut() -> None:
    """A name of only the characters `quote(safe="")` keeps (no '%', no leading dot) is its own
    file name and its own target name: the shortcut answers as the encoding does, for every name
    (random names over an alphabet of plain, reserved and non-ASCII characters)."""
    import random
    from urllib import parse

    from stella_trust._internal.generation import target_name

    def encoded(name: str) -> str:
        quoted = parse.quote(name, safe="")
        return "%2E" + quoted[1:] if quoted.startswith(".") else quoted

    alphabet = "abcXYZ019_.~-/%é :+\n"
    chooser = random.Random(24)
    for _ in range(20_000):
        name = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(1, 8)))
        assert target_filename(name) == encoded(name)
        assert target_name(encoded(name)) == name
        assert target_name(name) == parse.unquote(name)


def test_pruning_the_working_copy_keeps_what_is_wanted_and_refuses_what_is_not_ours(tmp_path: Path) -> None:
    """The working copy drops what the selection no longer wants from one listing; an entry that is
    not a stored target of ours (a directory, a name not in our encoding) is refused in one line
    before anything is removed."""
    generation = Generation(tmp_path / "generation")
    generation.targets_dir.mkdir(parents=True)
    for name in ("keep.pub", "drop.pub", "a/b.json", ".hidden"):
        (generation.targets_dir / target_filename(name)).write_text(name)
    generation.prune_targets({"keep.pub", "a/b.json", ".hidden"})
    assert generation.stored_target_names() == [".hidden", "a/b.json", "keep.pub"]
    (generation.targets_dir / "not%2fours%zz").write_text("x")  # decodes to a name encoded otherwise
    with pytest.raises(CacheVerificationError, match="unexpected entry in the cache"):
        generation.prune_targets(set())
    (generation.targets_dir / "not%2fours%zz").unlink()
    (generation.targets_dir / "sub").mkdir()
    with pytest.raises(CacheVerificationError, match="unexpected entry in the cache"):
        generation.prune_targets(set())
    held = sorted(path.name for path in generation.targets_dir.iterdir())
    assert held == sorted([target_filename(".hidden"), "a%2Fb.json", "keep.pub", "sub"])  # none removed
