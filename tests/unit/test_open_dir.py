"""fs.OpenDir, the one layer for writing where others can write (issue 21, decision 18): once
the top is open no path is resolved again. Each test makes the swap between two calls, so
the race is won every time."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stella_trust._internal.fs import OpenDir
from stella_trust.errors import UnsafeFileError


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "root.pem").write_bytes(b"encrypted key")
    (keys / "root.pem").chmod(0o600)
    return keys


def untouched(victim: Path) -> bool:
    return os.listdir(victim) == ["root.pem"] and (victim / "root.pem").read_bytes() == b"encrypted key"


def test_a_subdirectory_swapped_for_a_link_before_it_is_opened_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    (tmp_path / "www" / "metadata").mkdir(parents=True)
    with OpenDir.open(tmp_path / "www") as top:
        os.rename(tmp_path / "www" / "metadata", tmp_path / "held")
        (tmp_path / "www" / "metadata").symlink_to(victim)
        with pytest.raises(UnsafeFileError, match="metadata: it is a link or not a directory"):
            top.subdir("metadata", create=True)
        with pytest.raises(UnsafeFileError, match="link or not a directory"):
            top.descend("metadata/deeper", create=True)
    assert untouched(victim) and os.listdir(tmp_path / "held") == []


def test_a_subdirectory_swapped_after_it_was_opened_receives_everything_and_the_link_nothing(
    tmp_path: Path, victim: Path
) -> None:
    (tmp_path / "www" / "metadata").mkdir(parents=True)
    with OpenDir.open(tmp_path / "www") as top, top.subdir("metadata") as metadata:
        assert metadata.still_at(top, "metadata")
        os.rename(tmp_path / "www" / "metadata", tmp_path / "held")
        (tmp_path / "www" / "metadata").symlink_to(victim)
        metadata.write("timestamp.json", b"{}", 0o644)
        with metadata.create("1.root.json") as handle:
            handle.write(b"root")
        metadata.unlink("root.pem")  # a removal by that name acts on the held directory only
        assert sorted(metadata.names()) == ["1.root.json", "timestamp.json"]
        assert not metadata.still_at(top, "metadata")  # the writer can tell clients won't see them
    assert untouched(victim)
    assert stat.S_IMODE((tmp_path / "held" / "timestamp.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "held" / "1.root.json").stat().st_mode) == 0o600


def test_the_top_itself_is_followed_only_when_asked_and_names_stay_plain(
    tmp_path: Path, victim: Path
) -> None:
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="link or not a directory"):
        OpenDir.open(tmp_path / "link", follow=False)
    with OpenDir.open(tmp_path / "link") as followed:  # the operator's own path (`--to /srv/tuf`)
        assert followed.names() == ["root.pem"]
    with OpenDir.open(tmp_path / "made" / "here", create=True) as made:
        for bad in ("..", "a/b", "", "."):
            with pytest.raises(UnsafeFileError, match="not a plain file name"):
                made.write(bad, b"x")
    assert untouched(victim) and (tmp_path / "made" / "here").is_dir()


def test_create_and_exchange_refuse_what_others_planted(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "drive"
    out.mkdir()
    (out / "planted").symlink_to(victim / "root.pem")
    (out / "trust").symlink_to(victim)
    with OpenDir.open(out) as drive:
        with pytest.raises(UnsafeFileError, match="already stands there"):
            drive.create("planted")
        with drive.new_subdir(".staging") as staging:
            staging.write("manifest.json", b"{}")
        with pytest.raises(UnsafeFileError, match="trust: it is a link"):
            drive.exchange_in(".staging", "trust")
        drive.remove_tree("trust")  # removes the link itself, never what it names
        drive.exchange_in(".staging", "trust")
    assert untouched(victim)
    assert (out / "trust" / "manifest.json").read_bytes() == b"{}" and not (out / "trust").is_symlink()
    assert sorted(os.listdir(out)) == ["planted", "trust"]


def test_a_temp_name_swapped_for_a_link_is_refused_and_what_it_names_untouched(
    tmp_path: Path, victim: Path
) -> None:
    with OpenDir.open(tmp_path) as top:
        with (
            pytest.raises(UnsafeFileError, match="replaced while it was written"),
            top.replacing("timestamp.json") as handle,
        ):
            handle.write(b"{}")
            (tmp_name,) = [n for n in top.names() if n.endswith(".tmp")]
            os.unlink(tmp_path / tmp_name)
            (tmp_path / tmp_name).symlink_to(victim / "root.pem")
        assert top.lstat("timestamp.json") is None  # the planted link that was renamed in is gone
    assert untouched(victim) and stat.S_IMODE((victim / "root.pem").stat().st_mode) == 0o600
