"""The README's reader-group deployment, with real unprivileged users (issue 20).

The cache is written by a service user; attestors in the cache directory's group read it:
`status`, `get`, `keys`, `export`, `verify` and `open_trust()` work for them, after every
later sync (python-tuf writes its files 0600) and after root's own `trust import`. A user
outside the group gets one line that names the group and never suggests `trust sync`.
Users are numeric uids switched to with `setpriv` (util-linux); the group is an existing
one, so the message can name it.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stella_trust.repository import Repository
from tests.conftest import FaultyServer, Result, clean_env, ok, refused
from tests.e2e.conftest import Client
from tests.e2e.test_sigstore_native import CASES, STAGING, _verify_args

WRITER, READER, OUTSIDER = 61001, 61002, 61003
GROUP = next((g.gr_gid for g in grp.getgrall() if g.gr_name in ("users", "nogroup")), 61000)
GROUP_NAME = next((g.gr_name for g in grp.getgrall() if g.gr_gid == GROUP), str(GROUP))

pytestmark = pytest.mark.skipif(
    (os.geteuid() != 0 or shutil.which("setpriv") is None) and not os.environ.get("CI"),
    reason="needs root and setpriv (util-linux) to run commands as other users",
)


@dataclass
class AsUser(Client):
    """A host's CLI run as another uid (and its groups), through setpriv."""

    uid: int = 0
    groups: tuple[int, ...] = ()

    def argv(self, *args: str) -> list[str]:
        primary = self.groups[0] if self.groups else self.uid
        switch = ["setpriv", "--reuid", str(self.uid), "--regid", str(primary)]
        switch += ["--groups", ",".join(map(str, self.groups))] if self.groups else ["--clear-groups"]
        return [*switch, *super().argv(*args)]


@pytest.fixture
def shared_home() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is 0700 under root's name)."""
    home = Path(tempfile.mkdtemp(prefix="stella-readers-", dir="/tmp"))
    home.chmod(0o755)
    os.chown(home, WRITER, GROUP)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def deployment(tmp_path: Path, shared_home: Path) -> Iterator[tuple[Repository, dict[str, AsUser]]]:
    repo = Repository.create(tmp_path / "staging-repository")
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        repo.add_target(name, (STAGING / name).read_bytes())
    repo.publish()
    root = shared_home / "1.root.json"
    shutil.copyfile(repo.metadata_dir / "1.root.json", root)
    root.chmod(0o644)
    host = shared_home / "host"
    host.mkdir(mode=0o755)
    os.chown(host, WRITER, GROUP)
    with FaultyServer(repo.path) as server:

        def user(uid: int, *groups: int) -> AsUser:
            env = clean_env(HOME=str(shared_home))
            return AsUser(home=host, url=server.url, root=root, env=env, uid=uid, groups=groups)

        users = {
            "writer": user(WRITER, GROUP),  # the service user: its primary group is the readers'
            "reader": user(READER, READER, GROUP),
            "outsider": user(OUTSIDER, OUTSIDER),
        }
        ok(users["writer"].run("init", "--tuf-url", server.url, "--root", str(root)))
        yield repo, users


def reads_everything(reader: AsUser, out_dir: Path) -> None:
    status = ok(reader.run("status", "--json")).json()
    assert status["freshness"]["state"] == "fresh"
    assert ok(reader.run("get", "trusted_root.json")).out.startswith("{")
    assert ok(reader.run("keys", "--json")).json()["keys"]
    exported = out_dir / f"trusted_root.{len(list(out_dir.iterdir()))}.json"
    ok(reader.run("export", "--format", "trusted-root", "--out", str(exported)))
    assert exported.stat().st_size > 0
    verified = ok(reader.run(*_verify_args(CASES[3], False)))
    assert verified.out.startswith("verified: sha256:")
    library = subprocess.run(
        [
            *reader.argv("status")[: reader.argv("status").index(sys.executable)],
            sys.executable,
            "-c",
            "import stella_trust, sys; v = stella_trust.open_trust(sys.argv[1], config_path=sys.argv[2]);"
            " print(v.freshness.state)",
            str(reader.cache),
            str(reader.config),
        ],
        capture_output=True,
        text=True,
        env=reader.env,
        timeout=60,
        check=False,
    )
    assert library.returncode == 0 and library.stdout.strip() == "fresh", library.stderr


def refused_in_one_line(result: Result) -> None:
    _, hint = refused(result, 3, f"readers must be in the group {GROUP_NAME}")
    assert "usermod -aG" in hint and "trust sync" not in result.err


@pytest.mark.slow
def test_readers_in_the_group_read_after_every_writer_and_others_are_told_the_group(
    deployment: tuple[Repository, dict[str, AsUser]], shared_home: Path
) -> None:
    repo, users = deployment
    reader, writer = users["reader"], users["writer"]
    out_dir = shared_home / "reader-out"
    out_dir.mkdir(mode=0o700)
    os.chown(out_dir, READER, READER)
    cache = writer.cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o750 and cache.stat().st_gid == GROUP
    reads_everything(reader, out_dir)

    repo.add_target("extra.txt", b"x")  # python-tuf writes the new metadata 0600
    repo.publish()
    ok(writer.run("agent", "--once"))
    reads_everything(reader, out_dir)

    bundle = shared_home / "trust.tar.zst"
    ok(writer.run("snapshot", "export", "--out", str(bundle)))
    repo.publish()
    ok(users["writer"].run("sync"))
    root_import = Client(home=writer.home, url=writer.url, root=writer.root, env=writer.env)
    newer = shared_home / "newer.tar.zst"
    ok(writer.run("snapshot", "export", "--out", str(newer)))
    ok(root_import.run("import", str(newer)))  # root's import: files still the readers'
    reads_everything(reader, out_dir)

    outsider = users["outsider"]
    for command in (
        ["status"],
        ["get", "trusted_root.json"],
        ["keys"],
        ["export", "--format", "trusted-root", "--out", "/dev/null"],
        _verify_args(CASES[3], False),
    ):
        refused_in_one_line(outsider.run(*command))
    document = outsider.run("status", "--json").envelope()
    assert GROUP_NAME in document["error"]["message"] and "trust sync" not in document["error"]["hint"]

    # the hint followed: `sudo usermod -aG GROUP USER`, then a new login (its groups)
    assert f"usermod -aG {GROUP_NAME} " in document["error"]["hint"]
    joined = AsUser(
        home=outsider.home,
        url=outsider.url,
        root=outsider.root,
        env=outsider.env,
        uid=OUTSIDER,
        groups=(OUTSIDER, GROUP),
    )
    reads_everything(joined, out_dir_for(joined, shared_home))


def out_dir_for(user: AsUser, shared_home: Path) -> Path:
    out = shared_home / f"out-{user.uid}"
    out.mkdir(mode=0o700)
    os.chown(out, user.uid, user.uid)
    return out
