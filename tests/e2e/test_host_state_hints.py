"""Every host state's hint, followed literally (issue 20; docs/design.md, "Host states").

A host is put in each state through the real CLI; the failing command's hint is read, every
`trust ...` command in it is run as written with real values for its placeholders (URL,
ROOT.json, BUNDLE, TRUSTED_ROOT.json, and `...` for the arguments of the command that
failed), and the host must then be out of the state. A hint that names a command which does
not lead out, or a placeholder this test cannot fill, fails the test.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stella_trust.demo.repository import rekor_keys
from stella_trust.repository import Repository
from tests.conftest import FaultyServer, Result, ok
from tests.e2e.conftest import Client
from tests.e2e.operators import repo
from tests.e2e.test_sigstore_native import CASES, STAGING, _verify_args

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="apt-get install faketime")
COMMAND = re.compile(r"`(trust [^`]+)`")
PLACEHOLDER = re.compile(r"^(URL|ROOT\.json|BUNDLE|TRUSTED_ROOT\.json|PATH|\.\.\.|[A-Z_]{3,})$")


def hint_of(result: Result) -> str:
    lines = [line for line in result.err.splitlines() if line.startswith("hint: ")]
    assert len(lines) == 1, result.err
    return lines[0].removeprefix("hint: ")


def follow(
    host: Client, hint: str, values: dict[str, list[str]], run: Callable[..., Result] | None = None
) -> list[Result]:
    """Run every `trust ...` command of `hint` as written, placeholders filled from `values`."""
    commands = COMMAND.findall(hint)
    assert commands, f"the hint names no command: {hint}"
    results = []
    for command in commands:
        words = shlex.split(command)[1:]
        filled: list[str] = []
        for word in words:
            if PLACEHOLDER.match(word):
                assert word in values, f"no real value for {word!r} in hint {hint!r}"
                filled.extend(values[word])
            else:
                filled.append(word)
        results.append(ok((run or host.run)(*filled)))
    return results


@pytest.fixture
def served(client: Client) -> Client:
    return client


@pytest.fixture
def bundle_of(tmp_path: Path, synced: Client) -> Callable[[str], Path]:
    """A fresh bundle exported by the connected host `synced` (its clock, at call time)."""

    def make(name: str) -> Path:
        bundle = tmp_path / f"{name}.tar.zst"
        ok(synced.run("sync"))
        ok(synced.run("snapshot", "export", "--out", str(bundle)))
        return bundle

    return make


def air_gapped(tmp_path: Path, connected: Client) -> Client:
    home = tmp_path / "air"
    home.mkdir()
    host = Client(home=home, url="", root=connected.root)
    ok(host.run("init", "--root", str(connected.root), "--pin", "rekor-key-v1,rekor-key-v2"))
    return host


def values(host: Client, **more: list[str]) -> dict[str, list[str]]:
    return {"URL": [host.url], "ROOT.json": [str(host.root)], **more}


# ---- not initialised / no trust yet -----------------------------------------------------------


def test_uninitialised_connected_host(synced: Client) -> None:
    shutil.rmtree(synced.cache)
    failed = synced.status()
    assert failed.code == 3 and "is not initialised" in failed.err
    follow(synced, hint_of(failed), values(synced))  # the first command is the connected way
    ok(synced.status())


def test_uninitialised_bundle_only_host(
    tmp_path: Path, synced: Client, bundle_of: Callable[[str], Path]
) -> None:
    host = air_gapped(tmp_path, synced)
    shutil.rmtree(host.cache)
    failed = host.status()
    assert failed.code == 3 and "trust sync" not in failed.err and "--tuf-url" not in failed.err
    follow(host, hint_of(failed), values(host, BUNDLE=[str(bundle_of("first"))]))
    ok(host.status())


def test_initialised_with_no_trust_yet(client: Client) -> None:
    ok(client.init(sync=False))
    failed = client.status()
    assert failed.code == 3 and "holds no trust yet" in failed.err
    follow(client, hint_of(failed), values(client))
    ok(client.status())


def test_initialised_offline_with_no_trust_yet(
    tmp_path: Path, synced: Client, bundle_of: Callable[[str], Path]
) -> None:
    host = air_gapped(tmp_path, synced)
    failed = host.status()
    assert failed.code == 3 and "trust sync" not in failed.err
    follow(host, hint_of(failed), values(host, BUNDLE=[str(bundle_of("first"))]))
    ok(host.status())


# ---- stale, edited, anchor changed ------------------------------------------------------------


@needs_faketime
def test_stale_connected_host(synced: Client, demo: object) -> None:
    from stella_trust.demo.repository import DemoRepository

    assert isinstance(demo, DemoRepository)
    demo.repo.expiries.timestamp = demo.repo.expiries.timestamp * 40  # the timer kept running
    demo.repo.expiries.snapshot = demo.repo.expiries.snapshot * 40
    demo.repo.expiries.targets = demo.repo.expiries.targets * 40
    demo.repo.publish()
    synced.clock = "+20d"  # the host was off for 20 days: its trust is past grace
    failed = synced.status()
    assert failed.code == 3 and "stale" in failed.err
    follow(synced, hint_of(failed), values(synced))
    assert ok(synced.status()).json()["freshness"]["state"] == "fresh"


@needs_faketime
def test_stale_bundle_only_host(
    tmp_path: Path, synced: Client, bundle_of: Callable[[str], Path], demo: object
) -> None:
    from stella_trust.demo.repository import DemoRepository

    assert isinstance(demo, DemoRepository)
    host = air_gapped(tmp_path, synced)
    ok(host.run("import", str(bundle_of("first"))))
    demo.repo.expiries.timestamp = demo.repo.expiries.timestamp * 40
    demo.repo.expiries.snapshot = demo.repo.expiries.snapshot * 40
    demo.repo.expiries.targets = demo.repo.expiries.targets * 40
    demo.repo.publish()
    host.clock = synced.clock = "+20d"
    failed = host.status()
    assert failed.code == 3 and "trust sync" not in failed.err
    follow(host, hint_of(failed), values(host, BUNDLE=[str(bundle_of("renewed"))]))
    assert ok(host.status()).json()["freshness"]["state"] == "fresh"


def test_cache_edited_on_disk(synced: Client) -> None:
    current = synced.cache / "current"
    target = next((current / "targets").iterdir())
    target.write_bytes(target.read_bytes() + b"tampered")
    failed = synced.status()
    assert failed.code == 3
    follow(synced, hint_of(failed), values(synced))
    ok(synced.status())


def test_cache_edited_on_a_bundle_only_host(
    tmp_path: Path, synced: Client, bundle_of: Callable[[str], Path]
) -> None:
    host = air_gapped(tmp_path, synced)
    ok(host.run("import", str(bundle_of("first"))))
    target = next((host.cache / "current" / "targets").iterdir())
    target.write_bytes(b"tampered")
    failed = host.status()
    assert failed.code == 3 and "trust sync" not in failed.err
    follow(host, hint_of(failed), values(host, BUNDLE=[str(bundle_of("again"))]))
    ok(host.status())


def test_anchor_changed_on_disk(synced: Client, tmp_path: Path) -> None:
    other = Repository.create(tmp_path / "other")
    (synced.cache / "anchor.root.json").write_bytes(other.root_bytes(1))
    failed = synced.status()
    assert failed.code == 3 and "trust anchor changed on disk" in failed.err
    follow(synced, hint_of(failed), values(synced))
    ok(synced.status())


# ---- the repository expired, or the host's clock ----------------------------------------------


@pytest.fixture
def operated(tmp_path: Path) -> Iterator[tuple[Path, Client]]:
    """A `trust repo` workspace made three days ago (its timestamp has expired since, the
    timer never ran), its repository/ served as is, and a host that synced it back then."""
    workspace = tmp_path / "ws"
    ok(repo(workspace, "init", clock="-3d"))
    name = "rekor-key-v1.pub"
    (tmp_path / name).write_bytes(rekor_keys()[0])
    ok(repo(workspace, "add-target", str(tmp_path / name), "--name", name, clock="-3d"))
    (tmp_path / "trusted_root.json").write_bytes((STAGING / "trusted_root.json").read_bytes())
    ok(repo(workspace, "add-target", str(tmp_path / "trusted_root.json"), clock="-3d"))
    ok(repo(workspace, "publish", clock="-3d"))
    with FaultyServer(workspace / "repository") as server:
        home = tmp_path / "host"
        home.mkdir()
        root = workspace / "repository" / "metadata" / "1.root.json"
        host = Client(home=home, url=server.url, root=root, clock="-3d")
        ok(host.run("init", "--tuf-url", host.url, "--root", str(root), "--pin", "rekor-key-v1"))
        host.clock = None
        yield workspace, host


@needs_faketime
def test_repository_expired_then_renewed_by_the_hinted_operator_command(
    operated: tuple[Path, Client],
) -> None:
    workspace, host = operated
    failed = host.run("sync")
    assert failed.code == 1 and "timestamp.json is expired" in failed.err
    hint = hint_of(failed)
    assert "cached trust is unchanged" in hint and "timedatectl" in hint
    follow(host, hint, values(host), run=lambda *words: repo(workspace, *words[1:]))
    ok(host.run("sync"))
    ok(host.status())


@needs_faketime
def test_a_host_clock_far_ahead_is_told_to_fix_its_clock(synced: Client) -> None:
    synced.clock = "+400d"
    failed = synced.run("sync")
    assert failed.code == 1 and "this host's clock, which is" in failed.err and "ahead of" in failed.err
    assert "`timedatectl`" in hint_of(failed) and "trust repo" not in failed.err
    synced.clock = None  # what `timedatectl` / NTP does for the host
    ok(synced.run("sync"))


# ---- a bundle from another Sigstore instance --------------------------------------------------


def test_a_bundle_from_another_instance_is_named_and_its_hint_verifies_it(synced: Client) -> None:
    args = _verify_args(CASES[1], False)
    failed = synced.run(*args)
    assert failed.code == 1 and "signed on another Sigstore instance" in failed.err
    follow(
        synced,
        hint_of(failed),
        values(synced, **{"TRUSTED_ROOT.json": [str(STAGING / "trusted_root.json")], "...": args[1:]}),
    )
