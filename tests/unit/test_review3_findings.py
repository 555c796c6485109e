"""The third review of issue 21's fixes (docs/design.md decisions 17, 18): each finding refused,
and what the host held before still usable afterwards."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stella_trust._internal.bundle.export import export_directory
from stella_trust._internal.cacheowner import adopt_for
from stella_trust._internal.credentials import NO_GROUP, Owner, open_input
from stella_trust._internal.fs import OpenDir
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust.errors import ConfigError, UsageError
from tests.unit.simulator import Host, Simulated, synced

OWNER = 61001
as_root = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="root chowns")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory on the same filesystem as a victim, reachable by the cache's owner."""
    home = Path(tempfile.mkdtemp(prefix="stella-review3-", dir="/tmp"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@as_root
def test_root_never_adopts_a_hard_link_the_owner_planted(shared_tmp: Path) -> None:
    """Finding 1 (HIGH): the owner hard-links a root file into generations/; root's adoption
    walk (chown to the owner, before root takes the owner's uid) leaves that file alone."""
    victim = shared_tmp / "victim"
    victim.write_bytes(b"root's")
    victim.chmod(0o666)
    cache = shared_tmp / "cache"
    (cache / "generations").mkdir(parents=True)
    os.link(victim, cache / "generations" / "planted")
    (cache / "state.json").write_bytes(b"{}")  # root's leftover: starts the adoption walk
    for path in (cache, cache / "generations"):
        os.chown(path, OWNER, OWNER)
    store = Store(cache)
    owner = Owner.to_act_as(cache)
    assert owner == Owner(OWNER, OWNER)
    adopt_for(store, owner)
    st = victim.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o666)
    assert (cache / "state.json").stat().st_uid == OWNER  # the real leftover was adopted
    assert store.read_state() is not None


def test_a_url_that_is_not_percent_encoded_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Finding 2 (MEDIUM): a password with a space could not be redacted in the text around
    it, so such a URL is refused; no URL field's value is echoed in a refusal."""
    with pytest.raises(ConfigError) as spaced:
        load_settings(tmp_path / "none.yaml", {"mirrors": ["http://user:pw M4RK3R@127.0.0.1:1"]})
    assert "percent-encoded" in spaced.value.message and "M4RK3R" not in spaced.value.message
    monkeypatch.setenv("STELLA_MIRRORS", "http://u:pw,SEKRIT@127.0.0.1:9/")
    with pytest.raises(ConfigError) as split:
        load_settings(tmp_path / "none.yaml")
    assert "SEKRIT" not in split.value.message and "pw" not in split.value.message.split("(mirrors)")[1]


def test_the_writer_never_takes_a_group_its_owner_is_not_in() -> None:
    """Finding 3: a cache whose group is root's (`chown stella-trust DIR` left gid 0) gives root's
    writer only the owner's own groups; a bare uid gets the overflow group, never root's."""
    someone = next(p for p in pwd.getpwall() if p.pw_uid not in (0,) and p.pw_gid != 0)
    egid, groups = Owner(someone.pw_uid, 0).group_ids()
    assert egid == someone.pw_gid and 0 not in groups
    assert Owner(OWNER + 7777, 0).group_ids() == (NO_GROUP, [])
    assert Owner(OWNER + 7777, 100).group_ids() == (100, [100])


def test_an_export_whose_staging_was_swapped_before_the_rename_is_refused(
    host: Host, simulated: Simulated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 5: the drive's other writer renames the staging directory away and leaves a link
    at its name between the last check and the rename; OUT must not end up that link."""
    settings, store = host
    synced(host, simulated[0])
    victim = tmp_path / "operator-keys"
    victim.mkdir()
    real_exchange = OpenDir.exchange_in

    def swap_then_exchange(self: OpenDir, new: str, old: str) -> None:
        os.rename(new, f"moved-{new}", src_dir_fd=self.fd, dst_dir_fd=self.fd)
        os.symlink(victim, new, dir_fd=self.fd)
        real_exchange(self, new, old)

    monkeypatch.setattr(OpenDir, "exchange_in", swap_then_exchange)
    out = tmp_path / "drive" / "out"
    with pytest.raises(UsageError, match="not the export written"):
        export_directory(settings, store, out)
    assert not out.is_symlink() and list(victim.iterdir()) == []
    monkeypatch.undo()
    export_directory(settings, store, out)  # the next export works; the trust was never touched
    assert (out / "manifest.json").is_file() and load_view(settings, store).usable


def test_a_fifo_named_as_a_bundle_is_refused_at_once(tmp_path: Path) -> None:
    """Finding 6: a FIFO swapped in for the bundle after its stat is refused, never waited on
    (root's import would hold the cache lock for ever)."""
    fifo = tmp_path / "bundle.tar.zst"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        open_input(fifo)
