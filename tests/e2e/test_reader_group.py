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


# The Python a host installs for its service user is readable by that user; this machine's
# own interpreter may live in root's home (pyenv under /root). Root's writer can give up its
# uid only where the owner can read the modules it imports, so the test runs root's CLI on
# the distribution's interpreter with this checkout and its packages on the path.
def _python_the_writer_can_read() -> Path:
    """This interpreter when the writer's uid can read its standard library (a packaged install),
    else the distribution's python3 of the same version (this interpreter lives under /root)."""
    stdlib = os.path.dirname(os.__file__)
    readable = subprocess.run(
        ["setpriv", "--reuid", str(WRITER), "--regid", str(GROUP), "--clear-groups", "test", "-r", stdlib],
        check=False,
    )
    if readable.returncode == 0:
        return Path(sys.executable)
    return Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


SHARED_PYTHON = _python_the_writer_can_read() if shutil.which("setpriv") else Path(sys.executable)
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())


@dataclass
class RootOnSharedPython(Client):
    """Root's CLI on an interpreter every user can read (as a packaged install is)."""

    def argv(self, *args: str) -> list[str]:
        command = super().argv(*args)
        command[command.index(sys.executable)] = str(SHARED_PYTHON)
        return command


def owners_in(cache: Path) -> dict[int, list[str]]:
    """Every uid that owns something in the cache (links included, never followed), with a
    few of its entries (what an assertion names when a uid is unexpected)."""
    found: dict[int, list[str]] = {os.lstat(cache).st_uid: ["."]}
    for directory, dirs, files in os.walk(cache):
        for name in dirs + files:
            path = os.path.join(directory, name)
            found.setdefault(os.lstat(path).st_uid, []).append(os.path.relpath(path, cache))
    return {uid: paths[:5] for uid, paths in found.items()}


@pytest.mark.slow
def test_root_writes_the_service_users_cache_as_that_user(
    deployment: tuple[Repository, dict[str, AsUser]], shared_home: Path, tmp_path: Path
) -> None:
    """Root's `sync` and `import` (decision 17) run with the cache owner's uid: a link the owner
    plants can then reach only what the owner can, nothing root made is left for the agent
    to trip over, and an older cache holding root's files is given back to the owner. The
    bundle root names in its own 0700 directory is still read (with root's rights)."""
    assert SHARED_PYTHON.is_file(), f"{SHARED_PYTHON} (the distribution's python3) is needed"
    repo, users = deployment
    writer, reader = users["writer"], users["reader"]
    source = str(Path(__file__).resolve().parents[2])
    env = {**writer.env, "PYTHONPATH": os.pathsep.join([source, SITE_PACKAGES])}
    as_root = RootOnSharedPython(home=writer.home, url=writer.url, root=writer.root, env=env)
    out_dir = out_dir_for(reader, shared_home)

    # an older version's root-run import left root's files in the cache
    current = writer.cache / os.readlink(writer.cache / "current")
    for path in (writer.cache / "state.json", current, *current.rglob("*")):
        os.chown(path, 0, GROUP, follow_symlinks=False)
    repo.publish()
    ok(as_root.run("sync"))
    assert set(owners_in(writer.cache)) == {WRITER}, owners_in(writer.cache)

    root_only = tmp_path / "root-only"  # pytest's tmp_path: 0700, root's
    root_only.mkdir(mode=0o700)
    bundle = root_only / "trust.tar.zst"
    ok(as_root.run("snapshot", "export", "--out", str(bundle)))
    bundle.chmod(0o600)
    ok(as_root.run("import", str(bundle)))  # read inside the lock, with root's rights
    assert set(owners_in(writer.cache)) == {WRITER}, owners_in(writer.cache)

    # the steady state: the agent replaces and prunes everything root's runs made, five times
    for _ in range(5):
        repo.publish()
        ok(writer.run("agent", "--once"))
        repo.publish()
        ok(as_root.run("sync"))
    generations = [p for p in (writer.cache / "generations").iterdir() if not p.name.startswith(".")]
    assert len(generations) <= 2
    assert set(owners_in(writer.cache)) == {WRITER}, owners_in(writer.cache)
    reads_everything(reader, out_dir)
    doctor = ok(as_root.run("doctor", "--json")).json()
    cache_check = next(check for check in doctor["checks"] if check["check"] == "cache")
    assert cache_check["state"] == "ok" and "root writes it as" in cache_check["detail"]


SWAP_MID_LOCK = """
import os, sys
from pathlib import Path
from stella_trust._internal.store import Store

store, victim = Store(Path(sys.argv[1])), Path(sys.argv[2])
with store.lock(5):
    print("euid", os.geteuid())
    # the owner's move, between the lock-time checks and the write: generations/ -> a link
    os.rename(store.generations_dir, store.root / "generations.moved")
    os.symlink(victim, store.generations_dir)
    try:
        store.begin(None)
        print("written")
    except PermissionError as exc:
        print("refused", exc.errno)
    os.unlink(store.generations_dir)
    os.rename(store.root / "generations.moved", store.generations_dir)
print("euid", os.geteuid())
"""


@pytest.mark.slow
def test_a_directory_swapped_after_the_lock_checks_reaches_only_what_the_owner_can(
    deployment: tuple[Repository, dict[str, AsUser]], tmp_path: Path
) -> None:
    """The race the lock-time checks cannot close: the owner swaps generations/ for a link to a
    root-only directory after root took the lock. Root's writer acts as the owner, so the
    kernel refuses the write there; the victim is unchanged and the cache still syncs."""
    assert SHARED_PYTHON.is_file(), f"{SHARED_PYTHON} (the distribution's python3) is needed"
    repo, users = deployment
    writer = users["writer"]
    victim = tmp_path / "root-only"
    victim.mkdir(mode=0o700)
    (victim / "keep").write_text("root's")
    source = str(Path(__file__).resolve().parents[2])
    env = {**writer.env, "PYTHONPATH": os.pathsep.join([source, SITE_PACKAGES])}
    run = subprocess.run(
        [str(SHARED_PYTHON), "-c", SWAP_MID_LOCK, str(writer.cache), str(victim)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == [f"euid {WRITER}", "refused 13", "euid 0"], run.stdout
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert (victim / "keep").read_text() == "root's"
    repo.publish()
    ok(writer.run("agent", "--once"))
    assert set(owners_in(writer.cache)) == {WRITER}, owners_in(writer.cache)
