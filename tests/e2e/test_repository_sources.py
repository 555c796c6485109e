"""Issue 21, repository side: a served directory, a drive or a mirror is untrusted input.
`repo pull --from DIR` never hangs on a FIFO, never follows a link, never reads a file past
its size bound; `repo pull --from URL` has a deadline for the whole request and a size limit.
Each is refused in one line, and the workspace is unchanged afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust.repository import RepoError, Repository
from stella_trust.repository.pulling import pull
from stella_trust.repository.source import Source
from tests.conftest import FaultyServer, clean_env, ok, refused
from tests.e2e.operators import repo


def tree(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, Path]:
    """(a published repository, a workspace pulled from it)."""
    published = tmp_path / "published"
    repository = Repository.create(published, root_keys=1, root_threshold=1)
    repository.add_target("a.txt", b"a")
    repository.publish()
    workspace = tmp_path / "workspace"
    root = str(published / "metadata" / "1.root.json")
    ok(repo(workspace, "pull", "--from", str(published), "--root", root, env=clean_env()))
    return published, workspace


def refused_in_one_line(workspace: Path, source: Path, *words: str) -> None:
    before = tree(workspace)
    result = repo(workspace, "pull", "--from", str(source), env=clean_env())  # (120 s timeout: a hang fails)
    refused(result, 1, *words)
    assert tree(workspace) == before


def test_a_fifo_in_the_mirror_is_refused_not_waited_on(mirror: tuple[Path, Path]) -> None:
    published, workspace = mirror
    (published / "metadata" / "timestamp.json").unlink()
    os.mkfifo(published / "metadata" / "timestamp.json")  # nobody ever writes to it
    refused_in_one_line(workspace, published, "timestamp.json is not a regular file")


def test_a_link_anywhere_in_the_path_is_refused_not_followed(
    tmp_path: Path, mirror: tuple[Path, Path]
) -> None:
    published, workspace = mirror
    secret = tmp_path / "secret.json"
    shutil.move(published / "metadata" / "snapshot.json", secret)
    os.symlink(secret, published / "metadata" / "snapshot.json")
    named = json.loads((published / "metadata" / "timestamp.json").read_text())["signed"]["meta"]
    versioned = published / "metadata" / f"{named['snapshot.json']['version']}.snapshot.json"
    versioned.unlink()
    os.symlink(secret, versioned)
    refused_in_one_line(workspace, published, "is a symbolic link")
    linked = tmp_path / "linked"
    linked.mkdir()
    shutil.copytree(published / "targets", tmp_path / "real-targets")
    shutil.copytree(published, linked / "r", symlinks=True)
    shutil.rmtree(linked / "r" / "targets")
    os.symlink(tmp_path / "real-targets", linked / "r" / "targets")  # a directory link on the way
    (linked / "r" / "metadata" / "snapshot.json").unlink()
    shutil.copy(secret, linked / "r" / "metadata" / "snapshot.json")
    (linked / "r" / "metadata" / versioned.name).unlink()
    shutil.copy(secret, linked / "r" / "metadata" / versioned.name)
    fresh = tmp_path / "fresh"
    result = repo(
        fresh,
        "pull",
        "--from",
        str(linked / "r"),
        "--root",
        str(published / "metadata" / "1.root.json"),
        env=clean_env(),
    )
    assert result.code == 1 and "is a link or not a directory" in result.err
    assert "Traceback" not in result.err and not (fresh / "repository" / "targets").exists()


def test_an_oversized_file_is_refused_before_it_is_read(mirror: tuple[Path, Path]) -> None:
    published, workspace = mirror
    with (published / "metadata" / "2.root.json").open("wb") as handle:
        handle.truncate(600_000)  # above the 512 kB bound for a root (sparse: nothing is written)
    refused_in_one_line(workspace, published, "exceeding the maximum allowed length of 512000")


def test_a_url_that_dribbles_hits_the_whole_request_deadline(mirror: tuple[Path, Path]) -> None:
    published, workspace = mirror
    before = tree(workspace)
    with FaultyServer(published) as server:
        server.inject("/metadata/timestamp.json", "slow", 0.2)  # 5 bytes a second, never a pause long
        # enough for a per-read timeout
        source = Source(server.url, fetcher=HttpxFetcher(timeout=5.0, deadline=1.0))
        with pytest.raises(RepoError, match=r"SlowRetrievalError: .* not complete after 1s"):
            pull(source, workspace / "repository")
        server.heal()
        server.inject("/metadata/timestamp.json", "endless")  # more than any timestamp may be
        with pytest.raises(RepoError, match="does not verify"):
            pull(
                Source(server.url, fetcher=HttpxFetcher(timeout=5.0, deadline=30.0)), workspace / "repository"
            )
    assert tree(workspace) == before


def test_the_cli_reads_urls_through_the_clients_fetcher(
    mirror: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stella_trust._cli.repo_options import source_of as _source
    from stella_trust.repository import source as source_module

    published, workspace = mirror
    monkeypatch.setattr(source_module, "REQUEST_DEADLINE", 1.0)
    with FaultyServer(published) as server:
        server.inject("/metadata/timestamp.json", "slow", 0.2)
        source = _source(server.url)
        assert isinstance(source.fetcher, HttpxFetcher) and source.fetcher.deadline == 1.0
        with pytest.raises(RepoError, match="SlowRetrievalError"):
            pull(source, workspace / "repository")


def test_a_fifo_planted_in_the_served_directory_stops_a_publish_in_one_line(tmp_path: Path) -> None:
    """The served directory is written by others too (a plain copy, a compromised web host):
    a publish reads it by the same rule, and writes nothing when a file there is not one."""
    signing, served = tmp_path / "signing", tmp_path / "www"
    ok(repo(signing, "init", "--root-keys", "1", "--root-threshold", "1"))
    (tmp_path / "a.txt").write_text("a")
    ok(repo(signing, "add-target", str(tmp_path / "a.txt")))
    ok(repo(signing, "publish", "--to", str(served)))
    (served / "metadata" / "targets.json").unlink()
    os.mkfifo(served / "metadata" / "targets.json")
    before = {p.name for p in (served / "metadata").iterdir()}
    local = tree(signing / "repository")
    ok(repo(signing, "add-target", str(tmp_path / "a.txt"), "--name", "b.txt"))
    result = repo(signing, "publish", "--to", str(served))  # (120 s timeout: a hang fails)
    assert result.code == 1 and "targets.json is not a regular file" in result.err
    assert len(result.err.splitlines()) == 2
    assert {p.name for p in (served / "metadata").iterdir()} == before and tree(
        signing / "repository"
    ) == local
