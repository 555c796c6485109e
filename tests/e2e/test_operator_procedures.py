"""The operator procedures real teams follow, walked literally with directories as drives
and machines, and a real client syncing after every step (issue 11's six failures):

1. a quiet month with only the timer host running keeps clients fresh;
2. a release made on the signing host between timer runs reaches clients, is never
   reverted, and a machine on stale counters is refused;
3. Fleet's drive split (root drives, repository drive, day-to-day signing drive, release
   drive, online host) works with renamed key files, and wrong keys are refused;
4. a commit whose new targets key is held elsewhere (an HSM) is staged as one set: nothing
   reaches the served repository or the workspace's own repository/;
5. `check --within 60d` is green on a fresh repository, red 30 days before root expiry;
6. ceremony state: stale staged roots, nothing staged, external (HSM) signatures.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stella_trust.repository.serve import RepositoryServer
from tests.conftest import Result, clean_env, ok, under_clock
from tests.e2e.conftest import Client
from tests.e2e.operators import PASSPHRASES, operator_env, publish_demo_content, repo


def served_files(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".stella-trust-push.lock"  # push's lock records its pid
    }


def timestamp_version(directory: Path) -> int:
    return int(json.loads((directory / "metadata" / "timestamp.json").read_text())["signed"]["version"])


def online_env() -> dict[str, str]:
    return clean_env(
        STELLA_SNAPSHOT_PASSPHRASE=PASSPHRASES["SNAPSHOT"],
        STELLA_TIMESTAMP_PASSPHRASE=PASSPHRASES["TIMESTAMP"],
    )


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, Path]:
    """(signing workspace, served directory): a repository with demo content, pushed."""
    signing = tmp_path / "signing"
    ok(repo(signing, "init", "--root-keys", "1", "--root-threshold", "1"))
    publish_demo_content(signing, tmp_path)
    served = tmp_path / "www"
    ok(repo(signing, "push", "--to", str(served)))
    return signing, served


def timer_host(tmp_path: Path, signing: Path, served: Path) -> Path:
    """The online host: a pulled repository and only the snapshot and timestamp keys."""
    host = tmp_path / "timer-host"
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
    assert sorted(p.name for p in (host / "keys").glob("*.pem")) == ["snapshot.pem", "timestamp.pem"]
    return host


def client_for(tmp_path: Path, served: Path, url: str, name: str = "host") -> Client:
    client = Client(home=tmp_path / name, url=url, root=served / "metadata" / "1.root.json")
    client.home.mkdir()
    ok(client.run("init", "--tuf-url", url, "--root", str(client.root), "--pin", "rekor-key-v1"))
    return client


def client_targets_version(client: Client) -> int:
    return int(ok(client.status()).json()["metadata"]["targets"]["version"])


def served_targets_version(served: Path) -> int:
    targets = json.loads((served / "metadata" / "targets.json").read_text())["signed"]
    assert "release.txt" in targets["targets"]
    return int(targets["version"])


def run_hint(command: str, env: dict[str, str] | None = None, clock: str | None = None) -> Result:
    """A `trust ...` command exactly as a hint printed it (its own --path included)."""
    argv = shlex.split(command)
    assert argv[0] == "trust", command
    faked = under_clock(clock)
    done = subprocess.run(
        [*faked, sys.executable, "-m", "stella_trust", *argv[1:]],
        capture_output=True,
        text=True,
        env=env or operator_env(),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def freshness(client: Client) -> str:
    return str(ok(client.status()).json()["freshness"]["state"])


# ---- 1. a quiet month ---------------------------------------------------------------------
def test_quiet_month_with_only_the_timer_host_keeps_clients_fresh(
    tmp_path: Path, published: tuple[Path, Path]
) -> None:
    signing, served = published
    host = timer_host(tmp_path, signing, served)
    with RepositoryServer(served) as server:
        client = client_for(tmp_path, served, server.url)
        resigned_snapshot = 0
        for day in range(3, 31, 3):  # the timer runs; no release, no offline key, for 30 days
            clock = f"+{day}d"
            run = ok(
                repo(
                    host,
                    "bump-online",
                    "--from",
                    str(served),
                    "--to",
                    str(served),
                    env=online_env(),
                    clock=clock,
                )
            )
            resigned_snapshot += "re-signed snapshot and timestamp" in run.out
            client.clock = clock
            ok(client.run("sync"))
            assert freshness(client) == "fresh", f"day {day}: {client.status().out}"
            assert ok(repo(host, "check", "--within", "60d", env=clean_env(), clock=clock)).code == 0
        assert resigned_snapshot >= 3  # the 14-day snapshot is renewed weekly, not only the timestamp
        # the old procedure: `timestamp` alone over an expired snapshot is refused, not exit 0
        client.clock = None
        stale = repo(signing, "timestamp", env=operator_env(), clock="+20d")
        assert stale.code == 1 and "snapshot v2 expired" in stale.err and "bump-online" in stale.err


# ---- 2. two writers -------------------------------------------------------------------------
def test_release_between_timer_runs_reaches_clients_and_is_never_reverted(
    tmp_path: Path, published: tuple[Path, Path]
) -> None:
    signing, served = published
    host = timer_host(tmp_path, signing, served)
    with RepositoryServer(served) as server:
        client = client_for(tmp_path, served, server.url)
        for _ in range(4):
            ok(
                repo(
                    host,
                    "bump-online",
                    "--force",
                    "--from",
                    str(served),
                    "--to",
                    str(served),
                    env=online_env(),
                )
            )
        assert timestamp_version(served) == 6
        (tmp_path / "release.txt").write_text("release 1")
        ok(repo(signing, "add-target", str(tmp_path / "release.txt")))
        # stale counters: published on the signing machine's own repository/, four runs behind
        ok(repo(signing, "publish"))
        stale = repo(signing, "push", "--to", str(served))
        assert stale.code == 1 and "but v6 is published" in stale.err
        assert timestamp_version(served) == 6
        # its hint, followed as printed: sign above the published versions and push in one step
        hint = stale.err.split("hint: ", 1)[1]
        command = hint.split("`")[1]
        assert command.startswith("trust repo bump-online --force --from") and str(signing) in command
        released = ok(run_hint(command))
        assert "timestamp v7" in released.out and timestamp_version(served) == 7
        ok(client.run("sync"))
        assert client_targets_version(client) == served_targets_version(served) == 3
        # the timer's next run starts from the published state: the release stays
        ok(repo(host, "bump-online", "--force", "--from", str(served), "--to", str(served), env=online_env()))
        assert timestamp_version(served) == 8
        ok(client.run("sync"))
        assert client_targets_version(client) == served_targets_version(served) == 3
        # a timer host that pushes its own stale state without pulling is refused
        behind = tmp_path / "forgotten-host"
        shutil.copytree(host, behind)
        ok(repo(host, "bump-online", "--force", "--from", str(served), "--to", str(served), env=online_env()))
        before = served_files(served)
        refused = repo(behind, "push", "--to", str(served), env=clean_env())
        assert refused.code == 1 and "is published" in refused.err
        assert served_files(served) == before
        ok(client.run("sync"))
        assert freshness(client) == "fresh"


# ---- 3. Fleet's drive split ---------------------------------------------------------------
def test_fleet_drive_split_works_literally(tmp_path: Path) -> None:
    ceremony, served = tmp_path / "ceremony", tmp_path / "www"
    drives = {name: tmp_path / name for name in ("root-drive-2", "root-drive-3", "release-drive")}
    ok(
        repo(
            ceremony,
            "init",
            "--root-keys",
            "3",
            "--root-threshold",
            "2",
            "--targets-keys",
            "2",
            "--targets-threshold",
            "2",
        )
    )
    keyids = {
        k["file"]: k["keyid"] for k in ok(repo(ceremony, "keys", "--json", env=clean_env())).json()["keys"]
    }
    for drive in drives.values():
        drive.mkdir()
    # keys leave the ceremony machine; drive holders rename them as they like
    shutil.move(str(ceremony / "keys" / "root2.pem"), drives["root-drive-2"] / "yubi-backup.pem")
    shutil.move(str(ceremony / "keys" / "root3.pem"), drives["root-drive-3"] / "root3.pem")
    shutil.move(str(ceremony / "keys" / "targets2.pem"), drives["release-drive"] / "release.pem")
    (ceremony / "keys" / "index.json").unlink()  # the cache may be lost: keys are found by their key
    ok(repo(ceremony, "push", "--to", str(served), env=clean_env()))
    root1 = str(served / "metadata" / "1.root.json")

    # the day-to-day signing drive: the served repository and the three day-to-day keys
    signing = tmp_path / "signing-drive"
    ok(repo(signing, "pull", "--from", str(served), "--root", root1, env=clean_env()))
    ok(repo(ceremony, "export-keys", str(signing), "--roles", "targets,snapshot,timestamp"))
    refused_init = repo(signing, "init")
    assert refused_init.code == 2 and "already holds" in refused_init.err
    assert sorted(p.name for p in (signing / "keys").glob("*.pem")) == [
        "snapshot.pem",
        "targets.pem",
        "timestamp.pem",
    ]
    # the online host: only the timestamp key, renamed
    online = tmp_path / "online"
    ok(repo(online, "pull", "--from", str(served), "--root", root1, env=clean_env()))
    (online / "keys").mkdir()
    shutil.copy(signing / "keys" / "timestamp.pem", online / "keys" / "ts-2026.pem")
    ts_env = clean_env(STELLA_TS_2026_PASSPHRASE=PASSPHRASES["TIMESTAMP"])

    with RepositoryServer(served) as server:
        client = Client(home=tmp_path / "host", url=server.url, root=Path(root1))
        client.home.mkdir()
        ok(client.run("init", "--tuf-url", server.url, "--root", root1, "--no-sync"))

        # a release: CI key signs (1/2), the release drive's holder adds the second
        publish_files = tmp_path / "content"
        publish_files.mkdir()
        publish_demo_content_staged(signing, publish_files)
        staged = repo(signing, "publish", "--from", str(served))
        assert staged.code == 1 and "targets v2: 1 of 2 signatures" in staged.out
        release_machine = tmp_path / "release-machine"
        ok(repo(release_machine, "pull", "--from", str(served), "--root", root1, env=clean_env()))
        shutil.copytree(signing / "staged", release_machine / "staged")
        wrong = repo(release_machine, "sign", "targets", "--key", str(drives["root-drive-3"] / "root3.pem"))
        assert wrong.code == 1 and "is not one of the keys targets lists" in wrong.err
        release_env = operator_env(STELLA_RELEASE_PASSPHRASE=PASSPHRASES["TARGETS2"])
        ok(
            repo(
                release_machine,
                "sign",
                "targets",
                "--key",
                str(drives["release-drive"] / "release.pem"),
                env=release_env,
            )
        )
        shutil.copy(release_machine / "staged" / "targets.json", signing / "staged" / "targets.json")
        ok(repo(signing, "publish", "--from", str(served), "--to", str(served)))
        ok(client.run("sync"))
        assert "rekor-key-v1.pub" in {t["name"] for t in ok(client.status()).json()["targets"]}

        # the online host re-signs the timestamp with only its (renamed) key
        ok(repo(online, "timestamp", "--from", str(served), "--to", str(served), env=ts_env))
        ok(client.run("sync"))

        # yearly root rotation: add new root keys, sign on the drives, commit; revoke the old, commit
        root_env = operator_env(
            STELLA_ROOT4_PASSPHRASE="new root four",
            STELLA_ROOT5_PASSPHRASE="new root five",
            STELLA_YUBI_BACKUP_PASSPHRASE=PASSPHRASES["ROOT2"],
        )
        ok(repo(ceremony, "pull", "--from", str(served), env=clean_env()))
        wrong_root = repo(
            ceremony, "sign", "root", "--key", str(signing / "keys" / "timestamp.pem"), env=root_env
        )
        assert wrong_root.code == 2 and "no staged root to sign" in wrong_root.err
        ok(repo(ceremony, "root", "add-key", "--role", "root", "--name", "root4", env=root_env))
        ok(repo(ceremony, "root", "add-key", "--role", "root", "--name", "root5", env=root_env))
        wrong_root = repo(
            ceremony, "sign", "root", "--key", str(signing / "keys" / "timestamp.pem"), env=root_env
        )
        assert wrong_root.code == 1 and "is not one of the keys root" in wrong_root.err
        for key in (
            ceremony / "keys" / "root.pem",
            drives["root-drive-2"] / "yubi-backup.pem",
            ceremony / "keys" / "root4.pem",
        ):
            ok(repo(ceremony, "sign", "root", "--key", str(key), env=root_env))
        ok(repo(ceremony, "commit", "--to", str(served), env=root_env))
        ok(client.run("sync"))
        for old in ("root", "root2", "root3"):
            ok(
                repo(
                    ceremony, "root", "revoke-key", keyids[f"keys/{old}.pem"], "--role", "root", env=root_env
                )
            )
        ok(repo(ceremony, "root", "set-threshold", "root", "2", env=root_env))
        for key in (ceremony / "keys" / "root4.pem", ceremony / "keys" / "root5.pem"):
            ok(repo(ceremony, "sign", "root", "--key", str(key), env=root_env))
        committed = ok(repo(ceremony, "commit", "--to", str(served), env=root_env))
        assert "moved root.pem" in committed.err  # the revoked key at hand is retired
        ok(client.run("sync"))
        status = ok(client.status()).json()
        assert status["metadata"]["root"]["version"] == 3 and status["freshness"]["state"] == "fresh"


def publish_demo_content_staged(workspace: Path, content: Path) -> None:
    from stella_trust.demo.repository import FULCIO_CHAIN, fulcio_chain, rekor_keys, service_map

    pem, _ = rekor_keys()
    files = {
        "rekor-key-v1.pub": pem,
        "sigstore-services-v1.json": service_map(pem),
        FULCIO_CHAIN: fulcio_chain(datetime.now(UTC)),
    }
    for name, data in files.items():
        (content / name).write_bytes(data)
        ok(repo(workspace, "add-target", str(content / name), "--name", name))


# ---- 4. an unverifiable commit --------------------------------------------------------------
def test_commit_whose_new_targets_key_is_elsewhere_is_staged_and_nothing_changes(
    tmp_path: Path, published: tuple[Path, Path]
) -> None:
    signing, served = published
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    hsm = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "hsm.pub").write_bytes(
        hsm.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with RepositoryServer(served) as server:
        client = client_for(tmp_path, served, server.url)
        ok(repo(signing, "root", "add-key", "--role", "targets", "--public-key", str(tmp_path / "hsm.pub")))
        old_targets = ok(repo(signing, "keys", "--json")).json()["keys"]
        targets_keyid = next(k["keyid"] for k in old_targets if k["file"] == "keys/targets.pem")
        ok(repo(signing, "root", "revoke-key", targets_keyid, "--role", "targets"))
        ok(repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem")))
        before_local = served_files(signing / "repository")
        before_served = served_files(served)
        staged = repo(signing, "commit", "--to", str(served))
        # the new targets key is held elsewhere (an HSM): the change is staged as one set, and
        # nothing reaches the served directory (or repository/) until it verifies as a whole
        assert staged.code == 1 and "staged root v2 with targets v3" in staged.err
        assert "targets v3 has 0 of 1 signatures under root v2" in staged.err
        assert "added from " in staged.err and "hsm.pub" in staged.err  # the key, and where it is held
        assert served_files(signing / "repository") == before_local and served_files(served) == before_served
        assert (signing / "staged" / "root.json").is_file() and (
            signing / "staged" / "targets.json"
        ).is_file()
        ok(client.run("sync"))
        assert freshness(client) == "fresh"


# ---- 5. monitoring ------------------------------------------------------------------------
def test_check_within_60d_green_when_fresh_red_30_days_before_root_expiry(
    published: tuple[Path, Path],
) -> None:
    signing, _ = published
    fresh = ok(repo(signing, "check", "--within", "60d"))
    assert fresh.out.startswith("all roles within their rhythm")
    root = json.loads((signing / "repository" / "metadata" / "root.json").read_text())["signed"]
    expires = datetime.fromisoformat(root["expires"].replace("Z", "+00:00"))
    month_before = (expires - timedelta(days=30)).isoformat()
    red = repo(signing, "check", "--within", "60d", "--valid-at", month_before, "--json")
    assert red.code == 1
    states = {r["role"]: r for r in red.json()["roles"]}
    assert states["root"]["state"] == "expiring" and states["root"]["summary"].endswith("expires in 30 days")
    assert states["timestamp"]["state"] == "expired"
    later = repo(signing, "check", clock="+2d")  # the timer stopped two days ago
    assert later.code == 1 and "EXPIRED  timestamp v2 expired 1 day" in later.out
    assert "days, " not in later.out + later.err  # no raw timedeltas
    missed = repo(signing, "check", clock="+16h")
    assert missed.code == 1 and "MISSED   timestamp v2 expires in 7 hours" in missed.out
    assert "a re-sign was missed" in missed.out


# ---- 6. ceremony state ----------------------------------------------------------------------
def test_ceremony_state_is_never_reused_or_lost(tmp_path: Path, published: tuple[Path, Path]) -> None:
    signing, served = published
    nothing = repo(signing, "publish")
    assert nothing.code == 2 and "nothing staged to publish" in nothing.err
    assert timestamp_version(signing / "repository") == timestamp_version(served)
    assert repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem")).code == 2
    assert not (signing / "repository" / "metadata" / "2.root.json").exists()

    ok(repo(signing, "set-expiry", "root", "400d"))
    carried = tmp_path / "staged-root-copy.json"
    shutil.copy(signing / "staged" / "root.json", carried)
    ok(repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem")))
    ok(repo(signing, "commit", "--to", str(served)))
    (signing / "staged").mkdir(exist_ok=True)
    shutil.copy(carried, signing / "staged" / "root.json")  # the old copy comes back from a drive
    stale = repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem"))
    assert stale.code == 1 and "staged root v2 is stale: root v2 is published" in stale.err
    ok(repo(signing, "clean"))

    (tmp_path / "extra.pub").write_text("extra")
    ok(repo(signing, "add-target", str(tmp_path / "extra.pub"), "--name", "keys/2026/extra.pub"))
    ok(repo(signing, "publish", "--to", str(served)))
    ok(repo(signing, "remove-target", "extra.pub"))  # published as keys/2026/extra.pub
    status = ok(repo(signing, "status", "--json")).json()
    assert status["staged"]["changes"]["remove"] == ["keys/2026/extra.pub"]
    ok(repo(signing, "clean"))
    assert ok(repo(signing, "status", "--json")).json()["staged"] == {}

    # an external (HSM) root key signs the payload; the signature is verified before it counts
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    hsm = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "hsm.pub").write_bytes(
        hsm.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ok(repo(signing, "root", "add-key", "--role", "root", "--public-key", str(tmp_path / "hsm.pub")))
    ok(repo(signing, "root", "set-threshold", "root", "2"))
    ok(repo(signing, "payload", "root", "--out", str(tmp_path / "root.payload")))
    hsm_keyid = next(
        k["keyid"] for k in ok(repo(signing, "keys", "--json")).json()["keys"] if k["file"] is None
    )
    (tmp_path / "bad.sig").write_bytes(hsm.sign(b"something else"))
    bad = repo(signing, "add-signature", "root", "--keyid", hsm_keyid, "--sig", str(tmp_path / "bad.sig"))
    assert bad.code == 1 and "does not verify" in bad.err
    (tmp_path / "root.sig").write_text(hsm.sign((tmp_path / "root.payload").read_bytes()).hex())
    ok(repo(signing, "add-signature", "root", "--keyid", hsm_keyid[:10], "--sig", str(tmp_path / "root.sig")))
    signed = ok(repo(signing, "sign", "root", "--key", str(signing / "keys" / "root.pem")))
    assert "new root v3 threshold 2/2 met" in signed.out
    ok(repo(signing, "commit", "--to", str(served)))
    root = json.loads((served / "metadata" / "3.root.json").read_text())
    assert hsm_keyid in {s["keyid"] for s in root["signatures"]}


# ---- delegations: a CI releaser signs only its paths ---------------------------------------
def test_ci_releaser_publishes_only_its_delegated_paths(tmp_path: Path, published: tuple[Path, Path]) -> None:
    signing, served = published
    ci = tmp_path / "ci"
    ci_env = online_env() | {"STELLA_CI_PASSPHRASE": "ci release secret"}
    made = ok(repo(ci, "keygen", "ci", env=ci_env))
    assert (ci / "keys" / "ci.pem").is_file() and "hand ci.pub" in made.out
    ok(repo(signing, "delegate", "ci", "--paths", "builds/*", "--key", str(ci / "ci.pub")))
    ok(repo(signing, "publish", "--to", str(served)))
    ok(
        repo(
            ci, "pull", "--from", str(served), "--root", str(served / "metadata" / "1.root.json"), env=ci_env
        )
    )
    ok(repo(signing, "export-keys", str(ci), "--roles", "snapshot,timestamp"))
    (tmp_path / "build.bin").write_bytes(b"build 1")
    outside = repo(
        ci, "add-target", str(tmp_path / "build.bin"), "--name", "other/build.bin", "--role", "ci", env=ci_env
    )
    assert outside.code == 2 and "is not delegated 'other/build.bin'" in outside.err
    ok(repo(ci, "add-target", str(tmp_path / "build.bin"), "--name", "builds/build.bin", env=ci_env))
    released = ok(repo(ci, "publish", "--to", str(served), env=ci_env))
    assert "published ci v1" in released.out
    ci_role = json.loads((served / "metadata" / "ci.json").read_text())["signed"]
    assert list(ci_role["targets"]) == ["builds/build.bin"]
    targets = json.loads((served / "metadata" / "targets.json").read_text())["signed"]
    assert targets["targets"].keys() == {"rekor-key-v1.pub", "sigstore-services-v1.json", "fulcio-chain.pem"}
    with RepositoryServer(served) as server:
        client = client_for(tmp_path, served, server.url)
        assert freshness(client) == "fresh"
        assert client_targets_version(client) == 3


# ---- importing a repository someone else runs: Sigstore's public-good ----------------------
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore"
PUBLIC_GOOD = FIXTURES / "public-good-2025-10"
SIGN_OFF = "2025-10-20 12:00:00"


def test_pull_and_push_the_real_public_good_repository(tmp_path: Path) -> None:
    """tuf-on-ci's repository (ECDSA, threshold 3 of 5, a delegated role, roots 1/3/4 that
    no longer parse) is pulled, verified from 5.root.json, byte for byte; a copy pushed
    from it is what a client at sign-off time syncs."""
    workspace, copy = tmp_path / "pg", tmp_path / "served"
    pulled = ok(
        repo(
            workspace,
            "pull",
            "--from",
            str(PUBLIC_GOOD),
            "--root",
            str(PUBLIC_GOOD / "metadata" / "5.root.json"),
            env=clean_env(),
        )
    )
    assert "root v13, timestamp v492" in pulled.out  # no faketime: expiry is not a pull's business
    for source in sorted(PUBLIC_GOOD.rglob("*")):
        if source.is_file():
            mine = workspace / "repository" / source.relative_to(PUBLIC_GOOD)
            assert mine.read_bytes() == source.read_bytes(), source
    keys = ok(repo(workspace, "keys", "--json", env=clean_env())).json()["keys"]
    assert sum("root (root v13)" in k["roles"] for k in keys) == 5 and all(k["file"] is None for k in keys)
    check = repo(
        workspace, "check", "--within", "60d", "--valid-at", "2025-10-20T12:00:00Z", "--json", env=clean_env()
    )
    states = {r["role"]: r["state"] for r in check.json()["roles"]}
    # at sign-off the npm delegation had 56 days left: inside 60 days, the alarm is real
    assert check.code == 1 and states == {
        "root": "ok",
        "targets": "ok",
        "snapshot": "ok",
        "timestamp": "ok",
        "registry.npmjs.org": "expiring",
    }
    expired = repo(
        workspace, "push", "--to", str(copy), env=clean_env()
    )  # today: every client would refuse it
    assert expired.code == 1 and "clients would reject this repository" in expired.err
    assert not (copy / "metadata").exists()
    ok(repo(workspace, "push", "--to", str(copy), env=clean_env(), clock=SIGN_OFF))
    with RepositoryServer(copy) as server:
        host = Client(
            home=tmp_path / "host",
            url=server.url,
            root=PUBLIC_GOOD / "metadata" / "5.root.json",
            clock=SIGN_OFF,
        )
        host.home.mkdir()
        ok(host.run("init", "--tuf-url", server.url, "--root", str(host.root)))
        status = ok(host.status()).json()
        assert status["metadata"]["timestamp"]["version"] == 492 and status["sources"] == ["sigstore"]
