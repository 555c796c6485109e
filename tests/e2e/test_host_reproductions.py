"""Issue 20's reproductions through the real CLI, and the syncs after them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FaultyServer, ok
from tests.e2e.conftest import Client
from tests.e2e.operators import repo
from tests.e2e.test_sigstore_native import STAGING

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")


@pytest.fixture
def operated(tmp_path: Path) -> Iterator[tuple[Path, Client]]:
    """`trust repo init`; a.txt, b.txt and a trusted root published; a client pinning both."""
    workspace = tmp_path / "ws"
    ok(repo(workspace, "init"))
    for name, data in (("a.txt", b"a"), ("b.txt", b"b"), ("trusted_root.json", None)):
        path = tmp_path / name
        path.write_bytes(data if data is not None else (STAGING / name).read_bytes())
        ok(repo(workspace, "add-target", str(path)))
    ok(repo(workspace, "publish"))
    with FaultyServer(workspace / "repository") as server:
        home = tmp_path / "host"
        home.mkdir()
        root = workspace / "repository" / "metadata" / "1.root.json"
        host = Client(home=home, url=server.url, root=root)
        ok(host.run("init", "--tuf-url", server.url, "--root", str(root), "--pin", "a.txt", "--pin", "b.txt"))
        yield workspace, host


def test_a_retired_pin_stays_retired_on_every_later_sync(operated: tuple[Path, Client]) -> None:
    workspace, host = operated
    ok(repo(workspace, "remove-target", "b.txt"))
    ok(repo(workspace, "publish"))
    codes = []
    for _ in range(5):
        result = host.run("sync", "--json")
        codes.append(result.code)
        document = result.envelope()
        assert document["result"]["retired_pins"] == ["b.txt"]
        assert any("b.txt" in warning and "retired" in warning for warning in document["warnings"])
    assert codes == [0, 0, 0, 0, 0]  # was 0, 1, 1: "Unknown target 'b.txt'"
    status = ok(host.status()).json()
    assert status["pins"] == {"missing": ["b.txt"], "retired": ["b.txt"]}
    (workspace.parent / "b.txt").write_bytes(b"b again")
    ok(repo(workspace, "add-target", str(workspace.parent / "b.txt")))
    ok(repo(workspace, "publish"))
    back = ok(host.run("sync", "--json")).json()
    assert back["retired_pins"] == [] and "b.txt" in back["downloaded"]
    assert ok(host.run("get", "b.txt")).out == "b again"


def test_sync_force_that_finds_nothing_new_says_so(operated: tuple[Path, Client]) -> None:
    _, host = operated
    forced = ok(host.run("sync", "--force", "--json")).json()
    assert forced["changed"] is False and forced["changes"] == [] and forced["downloaded"]


@needs_faketime
def test_trust_diff_finds_the_earlier_generation_after_the_clock_stepped_back(
    operated: tuple[Path, Client],
) -> None:
    workspace, host = operated
    host.clock = "+12h"  # the host's clock ran ahead, then NTP stepped it back
    (workspace.parent / "c.txt").write_bytes(b"c")
    ok(repo(workspace, "add-target", str(workspace.parent / "c.txt")))
    ok(repo(workspace, "publish"))
    ok(host.run("sync"))
    host.clock = None
    ok(repo(workspace, "remove-target", "c.txt"))
    ok(repo(workspace, "publish"))
    ok(host.run("sync"))
    diff = ok(host.run("diff", "--json")).json()  # was: "no earlier generation kept"
    assert diff["roles"]["targets"] == {"before": 3, "after": 4} and diff["previous"]["verified"], diff
