"""Issue 26's seven reproductions, each a test of the behaviour that replaces it: a host
that is behind, forked or raced heals at its next scheduled run, or stops with one message
naming the command that heals it; versions only go up; a client syncs after the steps.

The real CLI in subprocesses, machines as directories (each with only its own keys), the
served directory written by plain copies where the procedures say so, faketime for hours."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stella_trust.repository.serve import RepositoryServer
from tests.conftest import Result, clean_env, ok, under_clock
from tests.e2e.conftest import Client
from tests.e2e.operators import PASSPHRASES, operator_env, publish_demo_content, repo

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "stella-trust-bump-online.service"


def version(directory: Path, role: str) -> int:
    return int(json.loads((directory / "metadata" / f"{role}.json").read_text())["signed"]["version"])


def online_env(**extra: str) -> dict[str, str]:
    env = clean_env(
        STELLA_SNAPSHOT_PASSPHRASE=PASSPHRASES["SNAPSHOT"],
        STELLA_TIMESTAMP_PASSPHRASE=PASSPHRASES["TIMESTAMP"],
    )
    env.update(extra)
    return env


def unit_run(host: Path, served: Path, clock: str | None = None, env: dict[str, str] | None = None) -> Result:
    """The timer's run exactly as systemd/stella-trust-bump-online.service says, paths mapped."""
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))[1:]
    mapped = [{"/srv/stella-trust-signer": str(host), "/srv/www/tuf": str(served)}.get(a, a) for a in argv]
    return trust(*mapped, env=env or online_env(), clock=clock)


def trust(*argv: str, env: dict[str, str] | None = None, clock: str | None = None) -> Result:
    faked = under_clock(clock)
    done = subprocess.run(
        [*faked, sys.executable, "-m", "stella_trust", *argv],
        capture_output=True,
        text=True,
        env=env or operator_env(),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def follow(result: Result, env: dict[str, str] | None = None) -> list[Result]:
    """Every `trust ...` command the hint and warnings printed, run exactly as printed."""
    lines = [x for x in result.err.splitlines() if x.startswith(("hint:", "warning:"))]
    commands = [c for x in lines for c in x.split("`")[1::2] if c.startswith("trust ")]
    assert commands, f"nothing to follow in:\n{result.err}"
    return [ok(trust(*shlex.split(c)[1:], env=env)) for c in commands]


def plain_copy(drive: Path, served: Path) -> None:
    """`aws s3 sync drive s3://bucket`: every file copied over, nothing deleted or checked."""
    for source in sorted(drive.rglob("*")):
        if source.is_file():
            target = served / source.relative_to(drive)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A signing workspace (all keys), the served directory, a timer host with only the
    snapshot and timestamp keys."""
    signing, served, host = tmp_path / "signing", tmp_path / "www", tmp_path / "timer-host"
    ok(repo(signing, "init", "--root-keys", "1", "--root-threshold", "1"))
    publish_demo_content(signing, tmp_path)
    ok(repo(signing, "push", "--to", str(served)))
    ok(
        repo(
            host,
            "pull",
            "--from",
            str(served),
            "--root",
            str(served / "metadata" / "1.root.json"),
            env=clean_env(),
        )
    )
    ok(repo(signing, "export-keys", str(host), "--roles", "snapshot,timestamp"))
    return {"signing": signing, "served": served, "host": host, "tmp": tmp_path}


@pytest.fixture
def server(world: dict[str, Path]) -> RepositoryServer:
    srv = RepositoryServer(world["served"]).start()
    yield srv  # type: ignore[misc]
    srv.stop()


def client_of(world: dict[str, Path], server: RepositoryServer) -> Client:
    served = world["served"]
    client = Client(home=world["tmp"] / "client", url=server.url, root=served / "metadata" / "1.root.json")
    client.home.mkdir()
    ok(client.run("init", "--tuf-url", server.url, "--root", str(client.root), "--pin", "rekor-key-v1"))
    return client


def synced(client: Client, clock: str | None = None) -> Result:
    client.clock = clock
    return client.run("sync")


# ---- 1. one race stalls the timer for good ---------------------------------------------------
def test_1_a_lost_race_never_stalls_the_timer(world: dict[str, Path], server: RepositoryServer) -> None:
    signing, served, host = world["signing"], world["served"], world["host"]
    client = client_of(world, server)
    ok(repo(host, "bump-online", "--force", env=online_env()))  # the timer signed (timestamp v3) ...
    (world["tmp"] / "r1.txt").write_text("release 1")
    ok(repo(signing, "add-target", str(world["tmp"] / "r1.txt")))
    ok(repo(signing, "publish", "--to", str(served)))  # ... while CI published (timestamp v3 too)
    lost = repo(host, "push", "--to", str(served), env=clean_env())
    # the timer's push came second: refused, with the step that rebases it
    assert lost.code == 1 and "metadata/3.snapshot.json is already published" in lost.err
    assert "trust repo bump-online --force --from" in lost.err
    # every later scheduled run, exactly as the unit says, takes the published state and signs above
    for hours in (6, 12, 18, 24, 30):
        run = unit_run(host, served, clock=f"+{hours}h")
        assert run.code == 0, run.err
        assert "re-signed" in run.out
        assert ok(synced(client, f"+{hours}h"))
    assert (
        version(served, "timestamp") >= 8 and "r1.txt" in (served / "metadata" / "targets.json").read_text()
    )
    status = ok(client.status()).json()
    assert status["freshness"]["state"] == "fresh" and status["metadata"]["targets"]["version"] == version(
        served, "targets"
    )


def test_1_a_timer_run_and_a_release_at_the_same_moment_both_land(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, host = world["signing"], world["served"], world["host"]
    client = client_of(world, server)
    (world["tmp"] / "race.txt").write_text("released during a timer run")
    ok(repo(signing, "add-target", str(world["tmp"] / "race.txt")))
    argv = [sys.executable, "-m", "stella_trust", "repo"]
    timer = subprocess.Popen(
        [*argv, "bump-online", "--force", "--from", str(served), "--to", str(served), "--path", str(host)],
        env=online_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    release = subprocess.Popen(
        [*argv, "publish", "--to", str(served), "--path", str(signing)],
        env=operator_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for proc in (timer, release):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err  # the served directory's lock orders them; neither is refused
    assert "race.txt" in (served / "metadata" / "targets.json").read_text()
    ok(synced(client))
    assert ok(client.status()).json()["metadata"]["targets"]["version"] == version(served, "targets")


# ---- 2. a plain-copy upload rolls the fleet back ---------------------------------------------
def test_2_a_plain_copy_rollback_is_repaired_at_the_next_run_and_versions_only_go_up(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, host, tmp = world["signing"], world["served"], world["host"], world["tmp"]
    client = client_of(world, server)
    ceremony, drive = tmp / "ceremony", tmp / "repository-drive"
    shutil.copytree(signing, ceremony)
    ok(repo(ceremony, "pull", "--from", str(served)))
    ok(repo(ceremony, "set-expiry", "root", "400d"))
    ok(repo(ceremony, "sign", "root", "--key", str(ceremony / "keys" / "root.pem")))
    ok(repo(ceremony, "commit", "--to", str(drive)))  # the drive carries timestamp v2
    for _ in range(4):  # meanwhile the timer published v3..v6
        ok(repo(host, "bump-online", "--force", "--from", str(served), "--to", str(served), env=online_env()))
    ok(synced(client))
    published = version(served, "timestamp")
    plain_copy(drive, served)
    assert version(served, "timestamp") < published
    refused = synced(client)
    assert refused.code == 1 and "Rollback refused" in refused.err  # clients hold the newer one
    run = unit_run(host, served, clock="+6h")  # the next scheduled run repairs it
    assert run.code == 0 and "is a rollback" in run.out, run.err
    assert version(served, "timestamp") > published
    ok(synced(client, "+6h"))
    assert ok(client.status()).json()["metadata"]["root"]["version"] == 2  # the ceremony's root is kept
    # after `pull --force` too, the host never signs at or below a version it has seen
    plain_copy(drive, served)
    highest = version(served, "timestamp")
    ok(repo(host, "pull", "--from", str(served), "--force", env=clean_env()))
    run = unit_run(host, served, clock="+12h")
    assert run.code == 0 and version(served, "timestamp") > published > highest
    ok(synced(client, "+12h"))


# ---- 3. a fork with equal version numbers is invisible to pull ---------------------------------
def test_3_an_equal_version_fork_is_seen_and_healed_by_its_hints(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, tmp = world["signing"], world["served"], world["tmp"]
    client = client_of(world, server)
    other = tmp / "releaser-2"
    shutil.copytree(signing, other)
    for machine, name in ((signing, "c.txt"), (other, "d.txt")):
        (tmp / name).write_text(name)
        ok(repo(machine, "add-target", str(tmp / name)))
        ok(repo(machine, "publish"))  # both sign targets v3 on their own repository/
    ok(repo(signing, "push", "--to", str(served)))
    refused = repo(other, "push", "--to", str(served))
    assert (
        refused.code == 1 and "metadata/3.targets.json" in refused.err and "already published" in refused.err
    )
    pulled = repo(other, "pull", "--from", str(served))
    assert pulled.code == 1 and "targets v3 here differs from the published targets v3" in pulled.err
    assert "--force" in pulled.err
    taken = follow(pulled)[0]  # pull --force: the published state, this one kept aside
    assert "kept in" in taken.err and list(tmp.glob("releaser-2/repository.forked-*"))
    assert "d.txt only in the kept-aside copy" in taken.err
    follow(taken)  # stage d.txt again, as printed
    ok(repo(other, "publish", "--to", str(served)))
    ok(synced(client))
    served_targets = json.loads((served / "metadata" / "targets.json").read_text())["signed"]["targets"]
    assert {"c.txt", "d.txt"} <= served_targets.keys()
    assert ok(client.status()).json()["metadata"]["targets"]["version"] == version(served, "targets")


# ---- 4. a stale historical file blocks every release ------------------------------------------
def test_4_a_stale_older_file_is_repaired_and_never_blocks_a_release(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, host, tmp = world["signing"], world["served"], world["host"], world["tmp"]
    client = client_of(world, server)
    old_drive = tmp / "old-signing-drive"
    shutil.copytree(signing, old_drive)
    (tmp / "old.txt").write_text("a release that never shipped")
    ok(repo(old_drive, "add-target", str(tmp / "old.txt")))
    ok(repo(old_drive, "publish"))  # its own targets v3
    for n in (1, 2):
        (tmp / f"r{n}.txt").write_text(f"r{n}")
        ok(repo(signing, "add-target", str(tmp / f"r{n}.txt")))
        ok(repo(signing, "publish", "--to", str(served)))  # targets v3, v4
        ok(synced(client))
    plain_copy(old_drive / "repository", served)  # the old drive resurfaces, synced over
    assert synced(client).code == 1
    assert unit_run(host, served, clock="+6h").code == 0  # the timer repairs the current state
    ok(synced(client, "+6h"))
    assert b"old.txt" in (served / "metadata" / "3.targets.json").read_bytes()  # the stale file stayed
    ok(repo(signing, "pull", "--from", str(served), clock="+6h"))
    pushed = ok(repo(signing, "push", "--to", str(served), clock="+6h"))  # its whole history
    assert "repaired metadata/3.targets.json" in pushed.err
    assert b"old.txt" not in (served / "metadata" / "3.targets.json").read_bytes()
    (tmp / "r3.txt").write_text("r3")
    ok(repo(signing, "add-target", str(tmp / "r3.txt")))
    ok(repo(signing, "publish", "--to", str(served), clock="+6h"))
    ok(repo(signing, "set-expiry", "root", "400d", clock="+6h"))  # the yearly ceremony, months later
    ok(repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem"), clock="+6h"))
    ok(repo(signing, "commit", "--to", str(served), clock="+6h"))
    ok(synced(client, "+6h"))
    assert ok(client.status()).json()["metadata"]["root"]["version"] == 2


# ---- 5. ceremonies spanning machines --------------------------------------------------------
def test_5_a_root_change_needing_keys_held_elsewhere_is_staged_as_one_set(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, host, tmp = world["signing"], world["served"], world["host"], world["tmp"]
    client = client_of(world, server)
    ci, offline = tmp / "ci", signing  # the CI holds the online targets key and the online keys
    ok(
        repo(
            ci,
            "pull",
            "--from",
            str(served),
            "--root",
            str(served / "metadata" / "1.root.json"),
            env=clean_env(),
        )
    )
    ok(repo(offline, "export-keys", str(ci), "--roles", "targets,snapshot,timestamp"))
    for name in ("targets", "snapshot", "timestamp"):
        (offline / "keys" / f"{name}.pem").unlink()
    env = operator_env(STELLA_TARGETS_OFFLINE_PASSPHRASE="offline targets")
    ok(repo(offline, "root", "add-key", "--role", "targets", "--name", "targets-offline", env=env))
    ok(repo(offline, "root", "set-threshold", "targets", "2"))
    ok(repo(offline, "sign", "root", "--key", str(offline / "keys" / "root.pem")))
    before = sorted(p.name for p in (served / "metadata").iterdir())
    staged = repo(offline, "commit", "--to", str(served), env=env)
    assert staged.code == 1 and "staged root v2 with targets v3" in staged.err
    assert "targets v3 has 1 of 2 signatures under root v2" in staged.err
    assert "made as keys/targets.pem and moved since" in staged.err  # the key, and where it is held
    assert "snapshot: snapshot key(s)" in staged.err and "timestamp: timestamp key(s)" in staged.err
    assert sorted(p.name for p in (served / "metadata").iterdir()) == before  # nothing served
    assert not (offline / "repository" / "metadata" / "2.root.json").exists()
    shutil.copytree(offline / "staged", ci / "staged", dirs_exist_ok=True)  # carried on a drive
    done = ok(repo(ci, "commit", "--to", str(served)))
    assert "committed root v2" in done.out and "targets v3" in done.out
    ok(synced(client))
    targets = json.loads((served / "metadata" / "targets.json").read_text())
    assert len(targets["signatures"]) == 2 and ok(client.status()).json()["metadata"]["root"]["version"] == 2
    # a new timestamp key made on the online host, added on the offline machine by its public key
    ts_env = online_env(STELLA_TS_2027_PASSPHRASE="new timestamp")
    ok(repo(host, "pull", "--from", str(served), env=clean_env()))
    ok(repo(host, "keygen", "ts-2027", env=ts_env))
    ok(repo(offline, "pull", "--from", str(served), env=clean_env()))
    ok(repo(offline, "clean"))
    old_keyid = json.loads((served / "metadata" / "root.json").read_text())["signed"]["roles"]["timestamp"][
        "keyids"
    ][0]
    ok(repo(offline, "root", "add-key", "--role", "timestamp", "--public-key", str(host / "ts-2027.pub")))
    ok(repo(offline, "root", "revoke-key", old_keyid, "--role", "timestamp"))
    ok(repo(offline, "sign", "root", "--key", str(offline / "keys" / "root.pem")))
    staged = repo(offline, "commit", "--to", str(served))
    assert staged.code == 1 and "timestamp: timestamp key(s)" in staged.err and "ts-2027.pub" in staged.err
    shutil.copytree(offline / "staged", host / "staged", dirs_exist_ok=True)
    ok(repo(host, "commit", "--to", str(served), env=ts_env))
    assert unit_run(host, served, clock="+6h", env=ts_env).code == 0
    ok(synced(client, "+6h"))
    assert ok(client.status()).json()["metadata"]["root"]["version"] == 3


# ---- 6. hints that lead nowhere ---------------------------------------------------------------
def test_6_every_hint_the_issue_names_leads_to_a_working_step(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, host, tmp = world["signing"], world["served"], world["host"], world["tmp"]
    client = client_of(world, server)
    offline = signing
    for name in ("snapshot", "timestamp"):  # the offline root machine holds no online key
        (offline / "keys" / f"{name}.pem").unlink()
    # `rotate timestamp` on the offline root machine: committed there (only the timestamp must
    # change: the snapshot is still valid), and it says how the new key reaches the online host
    rotated = ok(repo(offline, "rotate", "timestamp", "--to", str(served)))
    assert "committed root v2" in rotated.out
    command = next(c for c in rotated.err.split("`")[1::2] if c.startswith("trust repo export-keys"))
    ok(trust(*shlex.split(command.replace("DRIVE", str(tmp / "drive")))[1:]))
    (host / "keys" / "timestamp.pem").unlink()
    shutil.copy(tmp / "drive" / "keys" / "timestamp.pem", host / "keys" / "timestamp.pem")
    assert unit_run(host, served, clock="+6h").code == 0
    ok(synced(client, "+6h"))
    # after an abandoned change, `clean` and the same add-key work
    env = operator_env(STELLA_TARGETS_OFFLINE2_PASSPHRASE="offline two")
    ok(repo(offline, "root", "add-key", "--role", "targets", "--name", "targets-offline2", env=env))
    cleaned = ok(repo(offline, "clean"))
    assert "kept keys/targets-offline2.pem" in cleaned.out
    again = ok(repo(offline, "root", "add-key", "--role", "targets", "--name", "targets-offline2", env=env))
    assert "used again" in again.out
    ok(repo(offline, "clean"))
    taken = repo(offline, "root", "add-key", "--role", "targets", "--name", "targets")  # serves targets
    assert taken.code == 2 and "serves targets" in taken.err
    follow(taken, env=operator_env(STELLA_TARGETS_2_PASSPHRASE="another"))
    ok(repo(offline, "clean"))
    # KEY resolves against --path, as the help example shows
    elsewhere = tmp / "somewhere-else"
    elsewhere.mkdir()
    changed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stella_trust",
            "repo",
            "change-passphrase",
            "keys/snapshot.pem",
            "--path",
            str(host),
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
        env=online_env(STELLA_SNAPSHOT_NEW_PASSPHRASE="snapshot 2027"),
    )
    assert changed.returncode == 0, changed.stderr
    # `check` publishes nothing and says nothing about publishing
    red = repo(offline, "check", "--json", clock="+3d")
    assert red.code == 1 and "nothing was published" not in red.out + red.err
    assert "changes nothing" in red.envelope()["error"]["hint"]
    assert (
        unit_run(host, served, clock="+6h", env=online_env(STELLA_SNAPSHOT_PASSPHRASE="snapshot 2027")).code
        == 0
    )
    ok(repo(host, "check", "--within", "60d", clock="+6h"))
    ok(synced(client, "+6h"))


# ---- 7. a host whose key was rotated out looks healthy ---------------------------------------
def test_7_a_rotated_out_host_goes_red_even_when_nothing_is_due(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    signing, served, host = world["signing"], world["served"], world["host"]
    client = client_of(world, server)
    assert "nothing due" in unit_run(host, served).out  # healthy before
    ok(repo(signing, "rotate", "timestamp", "--to", str(served)))  # its host was broken into
    red = unit_run(host, served)
    assert red.code == 1
    first = red.err.splitlines()[0]
    assert "timestamp key timestamp.pem" in first and "root v2 removed it" in first
    assert "export-keys" in red.err and "systemctl disable --now stella-trust-bump-online.timer" in red.err
    ok(synced(client))  # clients follow the rotation


def test_3_a_fork_the_timer_cannot_heal_turns_it_red_until_a_targets_holder_does(
    world: dict[str, Path], server: RepositoryServer
) -> None:
    """A drive with another targets v3 is synced over the served directory after the timer
    served ours: clients hold either copy. The timer keeps them fresh on the served one, exits 1
    naming the fork, and is green again once the targets holder published a newer version."""
    signing, served, host, tmp = world["signing"], world["served"], world["host"], world["tmp"]
    client = client_of(world, server)
    other = tmp / "old-drive-workspace"
    shutil.copytree(signing, other)
    (tmp / "ours.txt").write_text("ours")
    ok(repo(signing, "add-target", str(tmp / "ours.txt")))
    ok(repo(signing, "publish", "--to", str(served)))  # targets v3 (ours)
    assert unit_run(host, served, clock="+6h").code == 0  # the timer serves it too
    ok(synced(client, "+6h"))
    (tmp / "theirs.txt").write_text("theirs")
    ok(repo(other, "add-target", str(tmp / "theirs.txt")))
    ok(repo(other, "publish"))  # another targets v3 on a drive
    plain_copy(other / "repository", served)
    red = unit_run(host, served, clock="+12h")
    assert red.code == 1 and "targets v3 here differs from the published targets v3" in red.err
    assert "publish --resign" in red.err and "re-signed" in red.out  # clients were kept fresh
    ok(synced(client, "+12h"))
    refused = repo(signing, "publish", "--resign", "targets", "--to", str(served), clock="+12h")
    assert refused.code == 1 and "forked" in refused.err
    for taken in follow(refused):  # pull --force: the published copy, ours kept aside
        follow(taken)  # stage ours.txt again, as printed
    ok(repo(signing, "publish", "--to", str(served), clock="+12h"))  # targets v4: both files
    served_targets = json.loads((served / "metadata" / "targets.json").read_text())["signed"]
    assert served_targets["version"] == 4 and {"ours.txt", "theirs.txt"} <= served_targets["targets"].keys()
    assert unit_run(host, served, clock="+18h").code == 0  # green again
    ok(synced(client, "+18h"))
    assert ok(client.status()).json()["metadata"]["targets"]["version"] == 4
