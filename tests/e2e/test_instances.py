"""Named instances (issue 23, items 1, 2 and 5): one host trusting two TUF repositories served on
127.0.0.1, each with its own anchor, URL, pins and cache, driven through the real CLI.

Every event is followed by the steady state: the other instance's next sync, status and reads
still work, and a refusal in one instance leaves both instances' trust as it was."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import stella_trust
from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository import Repository
from stella_trust.repository.serve import RepositoryServer
from tests.conftest import FaultyServer, ok, refused
from tests.e2e.conftest import Client
from tests.e2e.test_agent import AgentProcess, wait_for
from tests.e2e.test_sigstore_native import CASES, PUBLIC_GOOD, SIGN_OFF, STAGING, _verify_args, needs_faketime


@pytest.fixture
def second_demo(tmp_path: Path) -> DemoRepository:
    return DemoRepository(tmp_path / "repository-b")


@pytest.fixture
def second_server(second_demo: DemoRepository) -> Iterator[FaultyServer]:
    srv = FaultyServer(second_demo.repo.path).start()
    try:
        yield srv
    finally:
        srv.stop()


def _section(client: Client) -> dict[str, Any]:
    section: dict[str, Any] = yaml.safe_load(client.config.read_text())["attestor"]["trust_repo"]
    return section


def _add_b(client: Client, server: FaultyServer, demo: DemoRepository, *extra: str) -> Any:
    args = ["init", "--instance", "b", "--tuf-url", server.url, "--root", str(demo.root_path)]
    return ok(client.run(*args, *extra, "--json")).json()


@pytest.fixture
def two(synced: Client, second_server: FaultyServer, second_demo: DemoRepository) -> Client:
    """A host made by today's README commands (instance `default`), plus the instance `b`."""
    _add_b(synced, second_server, second_demo, "--pin", "rekor-key-v1")
    return synced


def _current(cache: Path) -> str:
    generation = Store(cache).current()
    assert generation is not None
    return generation.path.name


# ---- item 1: today's config is the instance `default`, unchanged --------------------------------
def test_todays_config_and_cache_are_the_default_instance_unchanged(
    synced: Client, second_server: FaultyServer, second_demo: DemoRepository
) -> None:
    """A config and cache made by the README's commands (`trust --config --cache-dir init
    --tuf-url --root --pin`) read, sync and report exactly as before, and stay so when a
    named instance is added beside them: no migration, no new key in the top level."""
    before_config = _section(synced)
    assert "instances" not in before_config
    status = ok(synced.status()).json()
    assert "instances" not in status and status["freshness"]["state"] == "fresh"  # today's shape
    assert status["tuf_url"] == synced.url
    sync = ok(synced.run("sync", "--json")).json()
    assert "instances" not in sync and sync["requests"] == 2  # today's idle sync, today's JSON
    assert ok(synced.run("status", "--instance", "default", "--json")).json()["tuf_url"] == synced.url

    added = _add_b(synced, second_server, second_demo)
    assert added["instance"] == "b" and added["cache"] == str(synced.cache / "instances" / "b")
    after = _section(synced)
    named = after.pop("instances")
    assert after == before_config  # the default's fields are untouched
    assert named["b"]["tuf_url"] == second_server.url and named["b"]["anchor_sha256"] == added["root_sha256"]
    assert named["b"]["local_cache_path"] == str(synced.cache / "instances" / "b")

    # the default instance still reads, syncs and answers queries with and without the flag
    assert ok(synced.run("sync", "--instance", "default", "--json")).json()["requests"] == 2
    default_status = ok(synced.status("--instance", "default")).json()
    assert default_status["tuf_url"] == synced.url and "instances" not in default_status
    key = ok(synced.run("get", "rekor-key-v1")).out
    assert key == ok(synced.run("get", "rekor-key-v1", "--instance", "default")).out
    keys_a = ok(synced.run("keys", "--json")).json()
    keys_b = ok(synced.run("keys", "--instance", "b", "--json")).json()
    assert keys_a != keys_b  # two repositories, two key sets, each read from its own cache

    # without --instance, status and sync report each instance under its name
    both = ok(synced.status()).json()["instances"]
    assert set(both) == {"default", "b"} and all(v["ok"] for v in both.values())
    assert both["default"]["result"]["tuf_url"] == synced.url
    assert both["b"]["result"]["tuf_url"] == second_server.url
    text = ok(synced.run("status")).out
    assert "instance default:" in text and "instance b:" in text


def test_each_instance_has_its_own_cache_made_like_the_cache(two: Client) -> None:
    instances_dir = two.cache / "instances"
    cache_b = instances_dir / "b"
    for directory in (instances_dir, cache_b):
        st = os.lstat(directory)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
        assert st.st_gid == os.stat(two.cache).st_gid
    assert Store(cache_b).is_initialised() and Store(cache_b).current() is not None
    assert (two.cache / "anchor.root.json").read_bytes() != (cache_b / "anchor.root.json").read_bytes()

    # the default Store's writers leave it alone: a forced sync (new generation, prune of
    # the old ones, abandoned-work sweep, modes put right) keeps b's cache byte for byte
    before = {p.relative_to(cache_b): p.read_bytes() for p in cache_b.rglob("*") if p.is_file()}
    b_current = _current(cache_b)
    os.chmod(two.cache / "state.json", 0o600)  # makes the default's writer walk its own tree
    os.chmod(cache_b / "state.json", 0o600)  # b's own business: the default's writer leaves it
    ok(two.run("sync", "--force", "--instance", "default"))
    ok(two.run("sync", "--force", "--instance", "default"))
    assert stat.S_IMODE(os.stat(two.cache / "state.json").st_mode) == 0o640  # the walk ran
    assert stat.S_IMODE(os.stat(cache_b / "state.json").st_mode) == 0o600  # and skipped b's cache
    assert _current(cache_b) == b_current
    assert {p.relative_to(cache_b): p.read_bytes() for p in cache_b.rglob("*") if p.is_file()} == before
    ok(two.run("sync", "--instance", "b"))  # b's own writer puts its modes right
    assert stat.S_IMODE(os.stat(cache_b / "state.json").st_mode) == 0o640
    ok(two.status("--instance", "b"))


def test_a_link_planted_for_the_instances_directory_is_refused(
    synced: Client, second_server: FaultyServer, second_demo: DemoRepository, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (synced.cache / "instances").symlink_to(elsewhere)
    args = ["init", "--instance", "b", "--tuf-url", second_server.url, "--root", str(second_demo.root_path)]
    refused(synced.run(*args), 1, "instances", "link")
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    ok(synced.status())  # the default instance is untouched and usable
    assert "instances" not in _section(synced)


def test_bad_and_unknown_instance_names_are_one_line(two: Client) -> None:
    error = two.run("status", "--instance", "../etc")
    assert error.code == 2 and "not allowed" in error.err and "Traceback" not in error.err
    _, hint = refused(two.run("status", "--instance", "nope"), 3, "no instance 'nope'", "default, b")
    assert "init --instance nope --tuf-url URL" in hint
    bad = ["init", "--instance", "default2", "--tuf-url", two.url, "--root", "/nonexistent/root.json"]
    refused(two.run(*bad), 1, "cannot read root file")
    assert set(_section(two)["instances"]) == {"b"}  # a refused init records nothing
    ok(two.status())


# ---- a refusal in one instance never touches another's trust ----------------------------------
def test_a_failing_instance_leaves_the_other_syncing(two: Client, second_server: FaultyServer) -> None:
    default_before, b_before = _current(two.cache), _current(two.cache / "instances" / "b")
    second_server.inject("timestamp.json", "status", 503)
    failed = two.run("sync", "--json")
    _, hint = refused(two.run("sync"), 1, "1 of 2 instances failed (b)", "instance b")
    assert "the other instances' trust is unaffected" in hint
    document = failed.envelope()
    per = document["result"]["instances"]
    assert per["default"]["ok"] and per["default"]["result"]["requests"] == 2
    assert not per["b"]["ok"] and "503" in per["b"]["error"]["message"]
    assert document["error"]["exit_code"] == 1

    # steady state: default keeps syncing and reading; b keeps serving the trust it had
    ok(two.run("sync", "--instance", "default"))
    ok(two.status("--instance", "default"))
    assert ok(two.status("--instance", "b")).json()["last_error"] is not None
    assert _current(two.cache) == default_before and _current(two.cache / "instances" / "b") == b_before
    second_server.heal()
    assert all(v["ok"] for v in ok(two.run("sync", "--json")).json()["instances"].values())


def test_tampered_metadata_in_one_instance_is_refused_and_the_other_is_untouched(
    two: Client, second_server: FaultyServer, second_demo: DemoRepository
) -> None:
    document = json.loads((second_demo.repo.path / "metadata" / "timestamp.json").read_bytes())
    document["signed"]["version"] += 5  # edited after signing: no threshold of signatures holds
    second_server.inject("timestamp.json", "body", json.dumps(document).encode())
    b_before = _current(two.cache / "instances" / "b")
    refused(two.run("sync", "--instance", "b"), 1)
    refused(two.run("sync"), 1, "(b)")
    assert _current(two.cache / "instances" / "b") == b_before
    ok(two.status("--instance", "b"))  # b's trust from before is intact and usable
    ok(two.run("sync", "--instance", "default"))
    second_server.heal()
    ok(two.run("sync"))


# ---- the library --------------------------------------------------------------------------
def test_open_trust_and_the_watcher_read_the_named_instance(two: Client, second_server: FaultyServer) -> None:
    default = stella_trust.open_trust(config_path=two.config)
    named = stella_trust.open_trust(config_path=two.config, instance="b")
    assert default.tuf_url == two.url and default.instance == "default"
    assert named.tuf_url == second_server.url and named.instance == "b"
    via_cache_dir = stella_trust.open_trust(two.cache, config_path=two.config, instance="b")
    assert via_cache_dir.rekor_log_id == named.rekor_log_id != default.rekor_log_id
    watcher = stella_trust.TrustWatcher(config_path=two.config, instance="b")
    assert watcher.view().tuf_url == second_server.url and not watcher.changed
    with pytest.raises(stella_trust.NotInitialisedError, match="no instance 'c'"):
        stella_trust.open_trust(config_path=two.config, instance="c")


# ---- the agent ----------------------------------------------------------------------------
def test_agent_once_runs_every_instance_and_reports_each(two: Client, second_server: FaultyServer) -> None:
    per = ok(two.run("agent", "--once", "--json")).json()["instances"]
    assert set(per) == {"default", "b"}
    assert all(v["result"]["freshness"]["state"] == "fresh" for v in per.values())
    second_server.inject("timestamp.json", "status", 503)
    failed = two.run("agent", "--once", "--json")
    assert failed.code == 1
    per = failed.envelope()["result"]["instances"]
    assert per["default"]["ok"] and not per["b"]["ok"]
    assert per["b"]["result"]["freshness"]["state"] == "fresh"  # b still serves its cached trust
    one = ok(two.run("agent", "--once", "--instance", "default", "--json")).json()
    assert "instances" not in one and one["freshness"]["state"] == "fresh"


def test_long_running_agent_keeps_every_instance_current(two: Client, second_server: FaultyServer) -> None:
    fast = {"refresh_interval_minutes": 0.01, "retry_initial_seconds": 0.2, "jitter_fraction": 0.1}
    two.set_config(**fast)
    document = yaml.safe_load(two.config.read_text())
    document["attestor"]["trust_repo"]["instances"]["b"].update(fast)
    two.config.write_text(yaml.safe_dump(document))
    agent = AgentProcess(two)
    try:
        wait_for(lambda: agent.count("agent started") >= 2, what=f"two loops started in {agent.lines}")
        assert agent.count(f"instance default: agent started: {two.url}") == 1
        assert agent.count(f"instance b: agent started: {second_server.url}") == 1
        b_state = Store(two.cache / "instances" / "b")
        seen = b_state.read_state().last_attempt
        wait_for(lambda: b_state.read_state().last_attempt != seen, what="a cycle of instance b")
        default_state = Store(two.cache)
        seen = default_state.read_state().last_attempt
        wait_for(lambda: default_state.read_state().last_attempt != seen, what="a cycle of default")
        agent.signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=20) == 0
    finally:
        agent.kill()
    ok(two.status())


# ---- item 2: verify picks the instance whose trust holds the bundle's keys ------------------
@pytest.fixture
def staging_server(tmp_path: Path) -> Iterator[tuple[FaultyServer, Path]]:
    """Sigstore staging's real trusted_root.json published in a TUF repository we build."""
    repo = Repository.create(tmp_path / "staging-repository")
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        repo.add_target(name, (STAGING / name).read_bytes())
    repo.publish()
    with FaultyServer(repo.path) as server:
        yield server, repo.metadata_dir / "1.root.json"


@pytest.fixture
def public_good_host(tmp_path: Path) -> Iterator[Client]:
    """A host whose instance `default` is the real public-good repository (faketime'd)."""
    with RepositoryServer(PUBLIC_GOOD) as server:
        home = tmp_path / "pg-host"
        home.mkdir()
        host = Client(
            home=home, url=server.url, root=PUBLIC_GOOD / "metadata" / "5.root.json", clock=SIGN_OFF
        )
        ok(host.run("init", "--tuf-url", host.url, "--root", str(host.root)))
        yield host


@needs_faketime
def test_verify_picks_the_instance_holding_the_bundles_log_key(
    public_good_host: Client, staging_server: tuple[FaultyServer, Path]
) -> None:
    host, case = public_good_host, CASES[0]
    # public-good trust alone: today's refusal, naming the cause
    refused(host.run(*_verify_args(case, False)), 1, "another Sigstore instance")

    server, root = staging_server
    ok(host.run("init", "--instance", "staging", "--tuf-url", server.url, "--root", str(root)))
    for each in (CASES[0], CASES[3]):  # Rekor v1 and Rekor v2 bundles, by path
        text = ok(host.run(*_verify_args(each, False))).out
        assert (
            text.startswith("verified: sha256:")
            and "instance staging: its trust holds the bundle's log key" in text
        )
    result = ok(host.run(*_verify_args(case, True), "--json")).json()
    assert result["instance"] == "staging" and result["trust"].endswith("instances/staging")

    # --instance forces one: public-good's trust refuses the staging bundle, in its words
    refused(
        host.run(*_verify_args(case, False)[:1], "--instance", "default", *_verify_args(case, False)[1:]),
        1,
        "another Sigstore instance",
    )
    forced = ok(host.run(*_verify_args(case, False), "--instance", "staging", "--json")).json()
    assert forced["instance"] == "staging"

    # a bundle naming no log is matched by its certificate's CA (staging's), then refused by
    # the verification itself, not by the choice
    no_log = next(c for c in CASES if c["bundle"] == "bundle_no_log_entry.txt.sigstore.json")
    error, _ = refused(host.run(*_verify_args(no_log, False)), 1)
    assert "no instance's trust holds" not in error

    # steady state: both instances still sync, report and verify
    per = ok(host.run("sync", "--json")).json()["instances"]
    assert per["default"]["ok"] and per["staging"]["ok"] and per["default"]["result"]["requests"] == 2
    assert set(ok(host.status()).json()["instances"]) == {"default", "staging"}
    ok(host.run(*_verify_args(case, False)))


@needs_faketime
def test_verify_refuses_when_no_instance_holds_the_bundle(
    public_good_host: Client, second_server: FaultyServer, second_demo: DemoRepository
) -> None:
    """A staging bundle on a host trusting public-good and a private (service-map) instance:
    one line naming both instances tried and the logs each holds, a hint, nothing changed."""
    host = public_good_host
    ok(
        host.run(
            "init",
            "--instance",
            "private",
            "--tuf-url",
            second_server.url,
            "--root",
            str(second_demo.root_path),
        )
    )
    before = {
        name: _current(cache)
        for name, cache in (("d", host.cache), ("p", host.cache / "instances" / "private"))
    }
    error, hint = refused(
        host.run(*_verify_args(CASES[0], False)), 1, "no instance's trust holds the bundle's log"
    )
    assert "tried default (logs https://log2025-1.rekor.sigstore.dev, https://rekor.sigstore.dev)" in error
    assert "private (logs " in error
    assert "trust init --instance NAME" in hint and "--instance NAME" in hint
    document = host.run(*_verify_args(CASES[0], False), "--json").envelope()
    assert document["error"]["exit_code"] == 1 and "tried default" in document["error"]["message"]
    assert {
        n: _current(c) for n, c in (("d", host.cache), ("p", host.cache / "instances" / "private"))
    } == before
    per = ok(host.run("sync", "--json")).json()["instances"]
    assert per["default"]["ok"] and per["private"]["ok"]


# ---- item 5: bundles carry every instance ---------------------------------------------------
def _bundle_only_host(tmp_path: Path, name: str, root: Path) -> Client:
    """An air-gapped host: instance `default` anchored on `root`, no repository."""
    home = tmp_path / name
    home.mkdir()
    host = Client(home=home, url=(tmp_path / "nowhere").as_uri(), root=root)
    ok(host.run("init", "--root", str(root), "--pin", "rekor-key-v1,rekor-key-v2"))  # as Client.init's
    return host


def _manifest(bundle: Path) -> dict[str, Any]:
    if bundle.is_dir():
        document: dict[str, Any] = json.loads((bundle / "manifest.json").read_text())
        return document
    import tarfile

    import zstandard

    with (
        bundle.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        member = next(iter(tar))
        handle = tar.extractfile(member)
        assert member.name == "manifest.json" and handle is not None
        document = json.loads(handle.read())
        return document


@pytest.mark.parametrize("sealed", [True, False], ids=["tar.zst", "directory"])
def test_a_bundle_carries_every_instance_and_import_restores_each(
    tmp_path: Path, two: Client, demo: DemoRepository, second_demo: DemoRepository, sealed: bool
) -> None:
    bundle = tmp_path / ("all.tar.zst" if sealed else "all-dir")
    export = ["snapshot", "export", "--out", str(bundle)] if sealed else ["export", "--out", str(bundle)]
    summary = ok(two.run(*export, "--json")).json()
    assert set(summary["instances"]) == {"default", "b"}
    carried = _manifest(bundle)["instances"]
    assert set(carried) == {"b"} and carried["b"]["path"] == (
        "instances/b.tar.zst" if sealed else "instances/b"
    )

    host = _bundle_only_host(tmp_path, "airgap", demo.root_path)
    # an instance this host does not have: refused before anything is imported
    _, hint = refused(
        host.run("import", str(bundle)), 3, "does not have the instance(s) b", "nothing was imported"
    )
    assert "--add-instance b --root ROOT.json" in hint
    assert Store(host.cache).current() is None and "instances" not in _section(host)

    # with its anchor: both restored, each under its name, each from its own anchor
    added = host.run(
        "import", str(bundle), "--add-instance", "b", "--root", str(second_demo.root_path), "--json"
    )
    per = ok(added).json()["instances"]
    assert per["default"]["ok"] and per["b"]["ok"] and per["b"]["result"]["changed"]
    section = _section(host)
    assert section["instances"]["b"]["offline_mode"] is True and "tuf_url" not in section["instances"]["b"]
    status = ok(host.status()).json()["instances"]
    assert status["default"]["result"]["freshness"]["state"] == "fresh"
    assert status["b"]["result"]["freshness"]["state"] == "fresh"

    def keys(client: Client, *extra: str) -> Any:
        document = ok(client.run("keys", "--json", *extra)).json()
        document.pop("at")  # when each was read
        return document

    assert keys(host, "--instance", "b") == keys(two, "--instance", "b") != keys(two)
    assert keys(host) == keys(two)

    # steady state: the same bundle again changes nothing; the source host keeps syncing
    again = ok(host.run("import", str(bundle), "--json")).json()["instances"]
    assert not again["default"]["result"]["changed"] and not again["b"]["result"]["changed"]
    assert all(v["ok"] for v in ok(two.run("sync", "--json")).json()["instances"].values())


def test_each_instance_is_checked_against_its_own_anchor(
    tmp_path: Path, two: Client, demo: DemoRepository
) -> None:
    """A host whose `b` trusts another root (here: default's): b's part is refused, default's
    is imported, and b's trust is untouched."""
    bundle = tmp_path / "all.tar.zst"
    ok(two.run("snapshot", "export", "--out", str(bundle)))
    host = _bundle_only_host(tmp_path, "airgap", demo.root_path)
    first = host.run("import", str(bundle), "--add-instance", "b", "--root", str(demo.root_path), "--json")
    assert first.code == 1 and first.envelope()["result"]["instances"]["default"]["ok"]
    result = host.run("import", str(bundle), "--json")
    per = result.envelope()["result"]["instances"]
    assert result.code == 1 and per["default"]["ok"] and not per["b"]["ok"]
    assert "differs from this host's trust anchor" in per["b"]["error"]["message"]
    assert Store(host.cache / "instances" / "b").current() is None
    ok(host.status("--instance", "default"))
    refused(host.run("import", str(bundle), "--instance", "b"), 1, "differs from this host's trust anchor")


def test_import_of_one_named_instance_and_an_anchor_by_digest(
    tmp_path: Path, two: Client, demo: DemoRepository, second_demo: DemoRepository
) -> None:
    bundle = tmp_path / "all.tar.zst"
    ok(two.run("snapshot", "export", "--out", str(bundle)))
    host = _bundle_only_host(tmp_path, "airgap", demo.root_path)
    digest = hashlib.sha256(second_demo.root_path.read_bytes()).hexdigest()

    # a digest the bundle carries no root for: one line, and no instance recorded
    wrong = ["import", str(bundle), "--instance", "b", "--add-instance", "b", "--root-sha256", "ab" * 32]
    refused(host.run(*wrong), 1, "carries no root with SHA-256 " + "ab" * 32)
    assert "instances" not in _section(host)
    refused(host.run("import", str(bundle), "--instance", "c"), 2, "carries no instance 'c'")

    # --instance b: only b's part, anchored on the root the bundle carries with that digest
    good = ["import", str(bundle), "--instance", "b", "--add-instance", "b", "--root-sha256", digest]
    imported = ok(host.run(*good, "--json")).json()
    assert "instances" not in imported and imported["path"].endswith("all.tar.zst#instances/b.tar.zst")
    assert _section(host)["instances"]["b"]["anchor_sha256"] == digest
    assert Store(host.cache).current() is None  # default's part was not imported
    assert ok(host.status("--instance", "b")).json()["source"]["kind"] == "bundle"
    refused(host.status("--instance", "default"), 3)
    ok(host.run("import", str(bundle)))  # then everything, default included
    assert all(v["ok"] for v in ok(host.status()).json()["instances"].values())


def test_a_one_instance_bundle_still_imports_into_any_instance(
    tmp_path: Path, two: Client, second_server: FaultyServer, second_demo: DemoRepository
) -> None:
    """A bundle from a host with only `default` is exactly what every earlier version wrote
    (no `instances` in its manifest): a host with several instances imports it into default,
    or into the instance named with --instance, from that instance's anchor."""
    home = tmp_path / "single"
    home.mkdir()
    single = Client(home=home, url=second_server.url, root=second_demo.root_path)
    ok(single.init())
    old = tmp_path / "old.tar.zst"
    ok(single.run("snapshot", "export", "--out", str(old)))
    assert "instances" not in _manifest(old) and _manifest(old)["format_version"] == 1
    b_before = _current(two.cache / "instances" / "b")
    refused(two.run("import", str(old)), 1, "differs from this host's trust anchor")  # into default
    ok(two.status("--instance", "default"))
    result = ok(two.run("import", str(old), "--instance", "b", "--json")).json()
    assert "instances" not in result and result["changed"] is False  # b already holds that trust
    assert _current(two.cache / "instances" / "b") == b_before
    assert all(v["ok"] for v in ok(two.run("sync", "--json")).json()["instances"].values())


def test_a_link_planted_for_a_nested_export_directory_is_refused(
    tmp_path: Path, two: Client, demo: DemoRepository
) -> None:
    bundle = tmp_path / "all-dir"
    ok(two.run("export", "--out", str(bundle)))
    moved = tmp_path / "elsewhere"
    (bundle / "instances" / "b").rename(moved)
    (bundle / "instances" / "b").symlink_to(moved)
    host = _bundle_only_host(tmp_path, "airgap", demo.root_path)
    ok(host.run("init", "--instance", "b", "--root", str(two.root)))  # any anchor: the link is refused first
    result = host.run("import", str(bundle), "--instance", "b")
    refused(result, 1, "Unsafe bundle", "link")
    assert Store(host.cache / "instances" / "b").current() is None


# ---- a config, cache and bundle written by the code before instances existed -------------------
BEFORE_INSTANCES = "cfe97f4"  # main before issue 23: its `trust` wrote every config and cache in use


@pytest.fixture
def code_before_instances(tmp_path: Path) -> Path:
    """That commit's stella_trust package, from this repository's own history."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    if (
        shutil.which("git") is None
        or subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-e", f"{BEFORE_INSTANCES}^{{commit}}"], capture_output=True
        ).returncode
    ):
        pytest.skip(f"commit {BEFORE_INSTANCES} is not in this checkout (a shallow clone)")
    tree = tmp_path / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", BEFORE_INSTANCES, "stella_trust"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def test_config_cache_and_bundle_written_before_instances_need_no_migration(
    tmp_path: Path,
    client: Client,
    demo: DemoRepository,
    second_server: FaultyServer,
    second_demo: DemoRepository,
    code_before_instances: Path,
) -> None:
    """The README's commands run by the code before instances existed (init, snapshot export);
    this code then reads, syncs, adds an instance and imports the old bundle, unchanged."""
    import subprocess

    def before(*args: str) -> subprocess.CompletedProcess[str]:
        """The old code's `trust` (run from elsewhere: `python -m` puts the cwd first on sys.path)."""
        env = {**client.env, "PYTHONPATH": str(code_before_instances)}
        argv = client.argv(*args)
        return subprocess.run(
            argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )

    assert "No such option: --instance" in before("status", "--instance", "x").stderr  # it is the old code
    init = before(
        "init", "--tuf-url", client.url, "--root", str(client.root), "--pin", "rekor-key-v1,rekor-key-v2"
    )
    assert init.returncode == 0, init.stderr
    bundle = tmp_path / "old.tar.zst"
    assert before("snapshot", "export", "--out", str(bundle)).returncode == 0
    written = client.config.read_text()

    assert ok(client.run("sync", "--json")).json()["requests"] == 2  # no migration: an idle sync
    assert ok(client.status()).json()["freshness"]["state"] == "fresh"
    assert client.config.read_text() == written
    _add_b(client, second_server, second_demo)
    assert all(v["ok"] for v in ok(client.run("sync", "--json")).json()["instances"].values())
    assert ok(client.run("import", str(bundle), "--instance", "default", "--json")).json()["changed"] is False
    host = _bundle_only_host(tmp_path, "airgap", demo.root_path)
    assert ok(host.run("import", str(bundle), "--json")).json()["changed"] is True
    assert ok(host.status()).json()["freshness"]["state"] == "fresh"
