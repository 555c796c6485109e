"""The one rule for files in directories others can write (issue 21; fs.py, decision 18).

Each attack is refused in one line, and what was held before is intact and usable after."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stella_trust._internal.fs import (
    atomic_write,
    create_exclusive,
    exclusive_lock,
    open_untrusted,
    open_untrusted_fd,
    read_bounded,
    read_bounded_fd,
    read_untrusted,
    remove_entries,
    set_access,
)
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.sync import sync
from stella_trust.errors import CacheVerificationError, ConfigError, LockBusyError, UnsafeFileError
from tests.unit.simulator import Host, RepositoryFetcher, Simulated, synced


def test_the_helper_refuses_links_fifos_devices_and_oversized_files(tmp_path: Path) -> None:
    secret = tmp_path / "root-only"
    secret.write_bytes(b"secret")
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        read_untrusted(tmp_path / "link", 100)
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        read_untrusted(tmp_path / "fifo", 100)  # O_NONBLOCK: refused, never a hang
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        read_untrusted(Path("/dev/zero"), 100)
    with pytest.raises(UnsafeFileError, match="more than the 10-byte limit"):
        read_untrusted(tmp_path / "big", 10)
    with pytest.raises(FileNotFoundError):
        open_untrusted(tmp_path / "absent", 10)
    with pytest.raises(UnsafeFileError, match="already stands"):
        create_exclusive(tmp_path / "link")
    assert secret.read_bytes() == b"secret"


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / "lock").symlink_to(victim)
    busy = LockBusyError  # the lock is never taken: the link is refused first
    with pytest.raises(UnsafeFileError, match="symbolic link"), exclusive_lock(tmp_path / "lock", 0, busy):
        pass  # was: the victim truncated, then a pid written into it
    assert victim.read_bytes() == b"keep me"
    (tmp_path / "lock").unlink()
    os.mkfifo(tmp_path / "lock")
    with (
        pytest.raises(UnsafeFileError, match="not a regular file"),
        exclusive_lock(tmp_path / "lock", 0, busy),
    ):
        pass


def test_atomic_write_never_writes_through_a_planted_temp_name(tmp_path: Path) -> None:
    atomic_write(tmp_path / "state.json", b"{}")
    assert (tmp_path / "state.json").read_bytes() == b"{}" and not list(tmp_path.glob(".*.tmp"))


def test_a_planted_lock_link_in_the_cache_refuses_the_sync_and_the_trust_stays(
    host: Host, simulated: Simulated, tmp_path: Path
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    victim = tmp_path / "root-only-file"
    victim.write_bytes(b"do not truncate")
    store.lock_path.unlink()
    store.lock_path.symlink_to(victim)
    with pytest.raises(UnsafeFileError, match=r"lock file .* symbolic link"):
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert victim.read_bytes() == b"do not truncate"
    assert load_view(settings, store).usable
    store.lock_path.unlink()  # the hint: remove it; the next sync works
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))


@pytest.mark.parametrize("kind", ["link", "fifo", "huge"])
def test_a_cached_file_replaced_by_a_link_fifo_or_huge_file_is_refused_then_rebuilt(
    host: Host, simulated: Simulated, tmp_path: Path, kind: str
) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    current = store.current()
    assert current is not None
    target = current.metadata_dir / "timestamp.json"
    target.unlink()
    if kind == "link":
        outside = tmp_path / "outside.json"
        outside.write_bytes((demo.repo.metadata_dir / "timestamp.json").read_bytes())
        target.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        with open(target, "wb") as handle:
            handle.truncate(600 << 20)  # sparse: larger than any role file a host parses
    with pytest.raises(CacheVerificationError, match="refusing timestamp"):
        load_view(settings, store)  # one line, never a hang or a memory blow-up
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))  # the hint: sync rebuilds
    assert load_view(settings, store).usable


def test_a_state_file_that_is_a_fifo_does_not_hang_readers(host: Host, simulated: Simulated) -> None:
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    store.state_path.unlink()
    os.mkfifo(store.state_path)
    assert load_view(settings, store).usable  # the state is informational; the floor is re-set
    store.state_path.unlink()


@pytest.mark.parametrize(
    "value, words",
    [(".inf", "finite number"), ("1e308", "less than or equal to"), ("nan", "finite number")],
)
def test_settings_numbers_are_finite_and_bounded(tmp_path: Path, value: str, words: str) -> None:
    config = tmp_path / "trust.yaml"
    config.write_text(f"attestor:\n  trust_repo:\n    freshness_threshold_days: {value}\n")
    with pytest.raises(ConfigError, match=words):
        load_settings(config, {})


def test_a_config_must_be_a_regular_file_of_at_most_one_mib(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    for path in (Path("/dev/zero"), tmp_path / "fifo.yaml"):
        with pytest.raises(ConfigError, match="not a regular file"):
            load_settings(path, {})
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(ConfigError, match="limit"):
        load_settings(big, {})


def test_a_cache_subdirectory_replaced_by_a_link_refuses_the_sync_and_removes_nothing(
    host: Host, simulated: Simulated, tmp_path: Path
) -> None:
    """The cache's owner swaps `generations` for a link to another directory and removes
    `current`: root's sync used to write there and prune every subdirectory of it."""
    settings, store = host
    demo, _ = simulated
    synced(host, demo)
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_bytes(b"keep")
    held = store.generations_dir.rename(tmp_path / "held-generations")
    store.generations_dir.symlink_to(victim)
    with pytest.raises(UnsafeFileError, match=r"generations: it is a link or not a directory"):
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert (victim / "sub" / "f").read_bytes() == b"keep" and sorted(os.listdir(victim)) == ["sub"]
    store.generations_dir.unlink()  # the hint followed: the link removed, the cache put back
    held.rename(store.generations_dir)
    assert load_view(settings, store).usable
    for _ in range(3):  # and the next syncs work
        sync(settings, store, fetcher=RepositoryFetcher(demo.repo), force=True)
    assert load_view(settings, store).usable


def test_removal_never_follows_a_directory_swapped_for_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (tmp_path / "generations").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="link or not a directory"):
        remove_entries(tmp_path / "generations", lambda name: True)
    assert (victim / "sub").is_dir()


def test_access_is_never_set_through_a_file_swapped_for_a_link_after_lstat(tmp_path: Path) -> None:
    """share_tree lstats, then sets the mode; a swap in between must change nothing outside."""
    victim = tmp_path / "setuid-binary"
    victim.write_bytes(b"x")
    victim.chmod(0o4755)
    cached = tmp_path / "cached"
    cached.write_bytes(b"y")
    cached.chmod(0o600)
    seen = os.lstat(cached)  # what share_tree saw
    cached.unlink()
    cached.symlink_to(victim)  # the cache owner's swap
    set_access(cached, 0o640, None, seen)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o4755
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    set_access(directory, 0o750, None)  # still sets what is really ours
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_a_lock_file_that_is_a_hard_link_is_refused_and_its_other_name_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.pem"
    victim.write_bytes(b"key material")
    os.link(victim, tmp_path / "lock")
    with (
        pytest.raises(UnsafeFileError, match="hard link"),
        exclusive_lock(tmp_path / "lock", 0, LockBusyError),
    ):
        pass
    assert victim.read_bytes() == b"key material"


def test_a_served_file_swapped_for_a_link_while_pushed_never_changes_what_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the re-review won: the temp file in the served directory is replaced by a link
    to the operator's key between its write and its chmod/rename."""
    from stella_trust.repository import RepoError, pushing

    key = tmp_path / "root.pem"
    key.write_bytes(b"encrypted key")
    key.chmod(0o600)
    served = tmp_path / "www"
    (served / "metadata").mkdir(parents=True)
    real_fsync = os.fsync

    def swap_then_fsync(fd: int) -> None:
        real_fsync(fd)
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.startswith(str(served)) and os.path.basename(name).startswith("."):
            os.unlink(name)
            os.symlink(key, name)  # whoever can write the served directory

    monkeypatch.setattr(os, "fsync", swap_then_fsync)
    with (
        pytest.raises(RepoError, match="replaced while it was written"),
        pushing.ServedWriter(served) as writer,
    ):
        writer.write("metadata/timestamp.json", b"{}")
    monkeypatch.undo()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_bytes() == b"encrypted key"
    assert not (served / "metadata" / "timestamp.json").exists()  # the planted link is gone
    with pushing.ServedWriter(served) as writer:  # the next push works
        writer.write("metadata/timestamp.json", b"{}")
    assert stat.S_IMODE((served / "metadata" / "timestamp.json").stat().st_mode) == 0o644


def test_share_tree_never_follows_a_directory_swapped_for_a_link_mid_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second review's race, won deterministically: right after the walk looked at
    `bait/d/secret`, the cache owner exchanges `bait/d` with a link to a victim directory.
    Opening by path would then chmod the victim's `secret`; the walk works through the
    directory it holds open, so the victim keeps its mode."""
    from stella_trust._internal import fs

    victim_dir = tmp_path / "victimdir"
    victim_dir.mkdir()
    (victim_dir / "secret").write_bytes(b"root only")
    (victim_dir / "secret").chmod(0o600)
    cache = tmp_path / "cache"
    (cache / "bait" / "d").mkdir(parents=True)
    (cache / "bait" / "d" / "secret").write_bytes(b"bait")
    (cache / "bait" / "d" / "secret").chmod(0o600)
    (cache / "bait" / "link").symlink_to(victim_dir)
    real_stat = os.stat
    swapped: list[bool] = []

    def stat_then_swap(path: object, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)  # type: ignore[arg-type]
        if path == "secret" and kwargs.get("dir_fd") is not None and not swapped:
            swapped.append(True)
            os.rename(cache / "bait" / "d", cache / "bait" / "held")
            os.rename(cache / "bait" / "link", cache / "bait" / "d")
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)  # the os module every fs part uses
    fs.share_tree(cache, 0o750, 0o640, None)
    monkeypatch.undo()
    assert swapped, "the walk never reached the bait"
    assert stat.S_IMODE((victim_dir / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((cache / "bait" / "held" / "secret").stat().st_mode) == 0o640  # ours was set


def test_a_config_that_repeats_aliases_is_refused_at_once(tmp_path: Path) -> None:
    """Aliases make a 10-line YAML file a tree of a billion values; counting them stops early."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 9)}]")
    lines.append("attestor: {trust_repo: {junk: *i}}")
    config = tmp_path / "laughs.yaml"
    config.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="more than 100000 values"):
        load_settings(config)


def test_a_bounded_read_allocates_what_the_file_holds_not_the_limit(tmp_path: Path) -> None:
    """`read(limit + 1)` made CPython allocate the whole bound first (512 MiB for a role file):
    the one helper now reads what fstat says, and still sees a file grown past the bound."""
    import tracemalloc

    small = tmp_path / "small.json"
    small.write_bytes(b"{}" * 1500)
    tracemalloc.start()
    try:
        data = read_untrusted(small, 512 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == b"{}" * 1500
    assert peak < 1 << 20  # was 512 MiB + 1


def test_a_bounded_read_of_a_file_that_grows_while_read_stops_one_byte_past_the_bound(
    tmp_path: Path,
) -> None:
    grower = tmp_path / "grower"
    grower.write_bytes(b"a" * 10)
    with grower.open("rb") as handle, grower.open("ab") as appender:
        size_seen = os.fstat(handle.fileno()).st_size
        appender.write(b"b" * 100)  # after the size was asked: the read must go on past it
        appender.flush()
        assert read_bounded(handle, 50) == b"a" * 10 + b"b" * 41  # limit + 1: "it grew past"
    assert size_seen == 10
    with grower.open("rb") as handle:
        assert read_bounded(handle, 1000) == b"a" * 10 + b"b" * 100  # under the bound: all of it
    read_end, write_end = os.pipe()  # no size to ask (0): read on to the bound
    with os.fdopen(read_end, "rb") as pipe_out, os.fdopen(write_end, "wb") as pipe_in:
        pipe_in.write(b"piped")
        pipe_in.close()
        assert read_bounded(pipe_out, 3) == b"pipe"


def test_a_descriptor_read_stops_one_byte_past_the_bound_and_allocates_what_the_file_holds(
    tmp_path: Path,
) -> None:
    """`read_bounded_fd` (read_untrusted's core, no file object): the size the admitting fstat
    saw is read first; a file grown since is read on in pieces to limit + 1, never allocating
    the bound; the whole-file reads refuse the growth in one line."""
    import tracemalloc

    grower = tmp_path / "grower"
    grower.write_bytes(b"a" * 10)
    fd, st = open_untrusted_fd(grower, 1 << 30)
    try:
        with grower.open("ab") as appender:
            appender.write(b"b" * 200_000)  # after the size was asked, larger than one piece
        tracemalloc.start()
        try:
            data = read_bounded_fd(fd, 100_000, st.st_size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        os.close(fd)
    assert st.st_size == 10
    assert data == b"a" * 10 + b"b" * (100_000 - 9)  # limit + 1: "it grew past"
    assert peak < 400_000  # the pieces and their join, not a 1 GiB buffer
    assert read_untrusted(grower, 1 << 20) == b"a" * 10 + b"b" * 200_000  # under the bound: all
    with pytest.raises(UnsafeFileError, match="more than the 1000-byte limit"):
        read_untrusted(grower, 1000)


def test_comparing_with_a_missing_or_planted_file_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """The tree comparison opens both files by the one rule: a missing one raises as before, a
    planted link or FIFO differs, and neither leaks the other file's descriptor."""
    from stella_trust._internal.tuf.workcopy import same_bytes

    left, right = tmp_path / "left", tmp_path / "right"
    left.write_bytes(b"same")
    right.write_bytes(b"same")
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    link.symlink_to(right)
    before = len(os.listdir("/proc/self/fd"))
    assert same_bytes(str(left), str(right))
    assert not same_bytes(str(left), str(fifo))
    assert not same_bytes(str(link), str(right))
    with pytest.raises(FileNotFoundError):
        same_bytes(str(left), str(tmp_path / "absent"))
    right.write_bytes(b"samE")
    assert not same_bytes(str(left), str(right))
    assert len(os.listdir("/proc/self/fd")) == before
