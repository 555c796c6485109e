"""Hints that work when followed, and words that say what went wrong (issue 20, CLI side).

- `trust sync` before `trust init`: the hint's `trust init` is run literally (URL and
  ROOT.json replaced by real values) and must lead out of the state: the same `sync` then
  succeeds. `--config`/`--cache-dir` belong to `trust`, before the subcommand.
- `trust verify ... sha256:abc` is a malformed digest, not a missing file.
- `snapshot export`, `snapshot inspect` and `import` count the same files and bytes for the
  same bundle (the files its manifest lists; manifest.json itself counted by none), as do
  `export` and `import` of a directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, Result, clean_env, ok, refused
from tests.e2e.conftest import Client
from tests.e2e.test_bundles import airgapped

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"


def hinted_init(hint: str) -> list[str]:
    """The `trust ... init ...` a hint names, placeholders and all, as argv words."""
    commands = [c for c in re.findall(r"`([^`]+)`", hint) if " init " in f"{c} "]
    assert len(commands) == 1, hint
    words = shlex.split(commands[0])
    assert words[0] == "trust" and "..." not in words, commands[0]
    return words


def follow(words: list[str], url: str, root: Path, cwd: Path, env: dict[str, str]) -> Result:
    """Run a hinted command as a user would: its placeholders replaced by real values, the
    `trust` word by this checkout's CLI, from the directory the failing command ran in."""
    values = {"URL": url, "ROOT.json": str(root)}
    assert {"URL", "ROOT.json"} <= set(words), words  # the only placeholders, both named
    # never the system's /etc/stella-trust and /var/lib/stella-trust (the tests run as root):
    # a hint that drops the config and cache the failing command named is itself the bug
    assert "--config" in words or "STELLA_TRUST_CONFIG" in env, f"an init of the system config: {words}"
    assert "--cache-dir" in words, f"an init of the system cache: {words}"
    argv = [sys.executable, "-m", "stella_trust", *(values.get(w, w) for w in words[1:])]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def trust(cwd: Path, env: dict[str, str], *args: str) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "stella_trust", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


# ---- sync before init -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("globals_", "env_config"),
    [
        (["--config", "trust.yaml", "--cache-dir", "cache"], None),  # the case
        (["--config", "conf dir/trust.yaml", "--cache-dir", "cache dir"], None),  # quoting
        (["--cache-dir", "cache"], "trust.yaml"),  # STELLA_TRUST_CONFIG names the config
    ],
    ids=["config-and-cache", "paths-with-spaces", "env-config"],
)
def test_sync_before_init_hint_followed_literally_initialises(
    tmp_path: Path,
    server: FaultyServer,
    demo: DemoRepository,
    globals_: list[str],
    env_config: str | None,
) -> None:
    work = tmp_path / "here"
    (work / "conf dir").mkdir(parents=True)
    env = clean_env(**({"STELLA_TRUST_CONFIG": env_config} if env_config else {}))
    failed = trust(work, env, *globals_, "sync")
    _, hint = refused(failed, 3)
    assert "not initialised" in failed.err
    words = hinted_init(hint)
    assert words.index("init") > max(
        (words.index(g) for g in ("--config", "--cache-dir") if g in words), default=0
    )
    init = follow(words, server.url, demo.root_path, work, env)
    assert init.code == 0, init
    # out of the state: the command that failed now works, and keeps working
    ok(trust(work, env, *globals_, "sync"))
    status = trust(work, env, *globals_, "status", "--json")
    assert ok(status).json()["freshness"]["state"] == "fresh"


def test_the_old_hint_fails_when_followed(tmp_path: Path, server: FaultyServer, demo: DemoRepository) -> None:
    """Why the hint changed: `--config` after `init` is not an option of init (exit 2)."""
    old = [
        "trust",
        "--cache-dir",
        "cache",
        "init",
        "--config",
        "trust.yaml",
        "--tuf-url",
        "URL",
        "--root",
        "ROOT.json",
    ]
    refused = follow(old, server.url, demo.root_path, tmp_path, clean_env())
    assert refused.code == 2 and "--config" in refused.err, refused
    assert not (tmp_path / "trust.yaml").exists() and not (tmp_path / "cache").exists()


def test_a_config_without_a_cache_hints_an_init_of_that_config(
    tmp_path: Path, server: FaultyServer, demo: DemoRepository
) -> None:
    """The config exists (tuf_url set by hand), the cache does not: the store's hint to run
    `trust init` gains the global options, so it initialises the cache the command reads."""
    work = tmp_path / "here"
    work.mkdir()
    (work / "trust.yaml").write_text(json.dumps({"attestor": {"trust_repo": {"tuf_url": server.url}}}))
    args = ["--config", "trust.yaml", "--cache-dir", "cache"]
    failed = trust(work, clean_env(), *args, "status")
    _, hint = refused(failed, 3)
    init = follow(hinted_init(hint), server.url, demo.root_path, work, clean_env())
    assert init.code == 0, init
    assert ok(trust(work, clean_env(), *args, "status", "--json")).json()["freshness"]["state"] == "fresh"


# ---- a malformed digest -----------------------------------------------------------------------
def _verify(host: Client, artifact: str, cwd: Path) -> Result:
    case = next(c for c in json.loads((STAGING / "cases.json").read_text()) if c["expect"] == "ok")
    return trust(
        cwd,
        host.env,
        "verify",
        "--trusted-root",
        str(STAGING / "trusted_root.json"),
        "--bundle",
        str(STAGING / "bundles" / case["bundle"]),
        "--certificate-identity",
        case["identity"],
        "--certificate-oidc-issuer",
        case["issuer"],
        artifact,
    )


@pytest.mark.parametrize(
    ("artifact", "words"),
    [
        ("sha256:abc", "64 hex characters (got 3)"),
        ("sha256:" + "a" * 63 + "z", "non-hex 'z'"),
        ("sha256:" + "a" * 65, "(got 65)"),
        ("SHA256:" + "a" * 64, "lowercase"),
    ],
)
def test_a_malformed_digest_is_named_as_one(
    tmp_path: Path, client: Client, artifact: str, words: str
) -> None:
    error, hint = refused(_verify(client, artifact, tmp_path), 2)
    assert error.startswith("error: malformed digest ") and words in error, error
    assert "cannot read" not in error and "sha256sum" in hint


def test_a_file_named_like_a_digest_is_still_a_file(tmp_path: Path, client: Client) -> None:
    (tmp_path / "sha256:abc").write_bytes(b"not the signed artifact")
    result = _verify(client, "sha256:abc", tmp_path)
    assert result.code == 1 and "malformed" not in result.err, result
    assert "digest" in result.err.lower()  # read and hashed: its digest is not the signed one
    real = STAGING / "bundles" / "bundle.txt"
    (tmp_path / "sha256:abc").write_bytes(real.read_bytes())
    digest = "sha256:" + hashlib.sha256(real.read_bytes()).hexdigest()
    assert _verify(client, digest, tmp_path).code == 0  # and a well-formed digest still verifies


# ---- one count for one bundle -----------------------------------------------------------------
def _manifest(bundle: Path) -> dict[str, object]:
    with (
        bundle.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as plain,
        tarfile.open(fileobj=plain, mode="r|") as tar,
    ):
        member = next(iter(tar))
        handle = tar.extractfile(member)
        assert member.name == "manifest.json" and handle is not None
        document: dict[str, object] = json.loads(handle.read())
        return document


def _said(text: str) -> tuple[int, int]:
    found = re.findall(r"(\d+) files, (\d+) bytes besides manifest\.json", text)
    assert len(found) == 1, text
    return int(found[0][0]), int(found[0][1])


def test_export_inspect_and_import_count_the_same_files(
    tmp_path: Path, synced: Client, demo: DemoRepository
) -> None:
    bundle = tmp_path / "trust.tar.zst"
    exported = ok(synced.run("snapshot", "export", "--out", str(bundle), "--json")).json()
    listed = _manifest(bundle)["files"]
    assert isinstance(listed, list)
    carried = (len(listed), sum(entry["length"] for entry in listed))
    inspected = ok(synced.run("snapshot", "inspect", str(bundle), "--json")).json()
    host = airgapped(tmp_path, demo.root_path)
    imported = ok(host.run("import", str(bundle), "--json")).json()
    assert (exported["files"], exported["bytes"]) == carried
    assert (len(inspected["files"]), sum(f["length"] for f in inspected["files"])) == carried
    assert (imported["files"], imported["bytes"]) == carried
    # the words agree too
    assert _said(ok(synced.run("snapshot", "export", "--out", str(bundle))).out) == carried
    assert _said(ok(synced.run("snapshot", "inspect", str(bundle))).out) == carried
    again = airgapped(tmp_path, demo.root_path, "airgap-2")
    assert _said(ok(again.run("import", str(bundle))).out) == carried
    # after the import: the host serves what it counted, and a second import changes nothing
    assert ok(again.status()).json()["freshness"]["state"] == "fresh"
    assert ok(again.run("import", str(bundle), "--json")).json()["changed"] is False


def test_a_directory_export_and_its_import_count_the_same_files(
    tmp_path: Path, synced: Client, demo: DemoRepository
) -> None:
    out = tmp_path / "trust-bundle"
    exported = ok(synced.run("export", "--out", str(out), "--json")).json()
    on_disk = [p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"]
    carried = (len(on_disk), sum(p.stat().st_size for p in on_disk))
    assert (exported["files"], exported["bytes"]) == carried
    inspected = ok(synced.run("snapshot", "inspect", str(out), "--json")).json()
    assert len(inspected["files"]) == carried[0]
    host = airgapped(tmp_path, demo.root_path)
    imported = ok(host.run("import", str(out), "--json")).json()
    assert (imported["files"], imported["bytes"]) == carried


def test_sync_with_no_config_anywhere_says_not_initialised(tmp_path: Path) -> None:
    """No --config, no STELLA_TRUST_CONFIG, no file at the default path: `sync` says the
    host is not initialised (exit 3, like every other command) instead of "tuf_url is not
    set", and its init keeps the --cache-dir given. (Not followed here: as root, that init
    would write /etc/stella-trust/trust.yaml.)"""
    from stella_trust._internal.settings import default_config_path

    default = default_config_path()
    if default.exists():
        pytest.skip(f"this machine has a config at {default}")
    _, hint = refused(trust(tmp_path, clean_env(), "--cache-dir", "cache", "sync"), 3)
    assert hinted_init(hint) == shlex.split("trust --cache-dir cache init --tuf-url URL --root ROOT.json")
    assert not (tmp_path / "cache").exists()  # nothing was written
