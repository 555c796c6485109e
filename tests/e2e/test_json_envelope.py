"""One JSON shape for every command (README "JSON output"): every command path of the app
is run with `--json`, on success and on failure, and must print exactly one envelope
{"command", "ok", "result", "warnings", "error"} whose `ok` matches the exit code. A new
command without a case here fails the walk."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import typer

from stella_trust._cli.app import app
from tests.conftest import FaultyServer, Result, clean_env
from tests.e2e.conftest import Client
from tests.e2e.operators import PASSPHRASES, operator_env, repo

NO_JSON = {"demo", "repo payload"}  # a human walk-through, and raw bytes to sign


def command_paths() -> set[str]:
    paths: set[str] = set()

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, [*prefix, name])
            else:
                paths.add(" ".join([*prefix, name]))

    walk(typer.main.get_command(app), [])
    return paths


def check(result: Result, command: str, *, ok: bool | None = None) -> dict[str, object]:
    document = result.envelope()  # shape, ok <-> error, ok <-> exit code
    assert document["command"] == command, document
    assert isinstance(document["warnings"], list)
    if ok is not None:
        assert document["ok"] is ok, (result.out, result.err)
    if not document["ok"]:
        error = document["error"]
        assert isinstance(error, dict) and set(error) == {"message", "hint", "exit_code"}
        assert error["exit_code"] == result.code
        assert result.err.startswith("error: ") or (
            result.code == 2 and "Error: " in result.err
        )  # click usage
    return document


def test_every_client_command_speaks_the_envelope(tmp_path: Path, synced: Client) -> None:
    seen: set[str] = set()

    def run(command: str, *args: str, ok: bool | None = True, host: Client = synced) -> dict[str, object]:
        seen.add(command)
        return check(host.run(*command.split(), *args, "--json"), command, ok=ok)

    bundle = tmp_path / "trust.tar.zst"
    run("sync")
    status = run("status")
    assert isinstance(status["result"], dict) and "freshness" in status["result"]
    run("export", "--format", "trusted-root", "--out", str(tmp_path / "trusted_root.json"))
    run("snapshot export", "--out", str(bundle))
    run("snapshot inspect", str(bundle))
    run("import", str(bundle))
    run(
        "verify",
        "--bundle",
        str(tmp_path / "trusted_root.json"),
        "--certificate-identity",
        "a@b.c",
        "--certificate-oidc-issuer",
        "https://issuer.example",
        "sha256:" + "ab" * 32,
        ok=False,
    )
    run("agent", "--once")
    run("get", "rekor-key-v1.pub", "--out", str(tmp_path / "rekor.pub"))
    run("keys")
    run("diff")
    run("doctor", ok=None)  # a loopback demo host: the verdict is doctor's own test's business
    run("config show")
    fresh = Client(home=tmp_path / "new-host", url=synced.url, root=synced.root)
    fresh.home.mkdir()
    init = run("init", "--tuf-url", fresh.url, "--root", str(fresh.root), host=fresh)
    assert isinstance(init["result"], dict) and init["result"]["root_version"] == 1
    unknown = check(synced.run("sync", "--no-such-option", "--json"), "sync", ok=False)
    assert unknown["error"]["exit_code"] == 2  # type: ignore[index]
    nowhere = Client(home=tmp_path / "not-initialised", url=synced.url, root=synced.root)
    nowhere.home.mkdir()
    not_initialised = check(nowhere.run("status", "--json"), "status", ok=False)
    assert not_initialised["error"]["exit_code"] == 3  # type: ignore[index]
    client_paths = {p for p in command_paths() if not p.startswith("repo ")} - NO_JSON
    assert client_paths <= seen, f"commands without an envelope case: {sorted(client_paths - seen)}"


def test_every_operator_command_speaks_the_envelope(tmp_path: Path) -> None:
    ws, served = tmp_path / "ws", tmp_path / "www"
    seen: set[str] = set()

    def run(
        command: str, *args: str, ok: bool | None = True, env: dict[str, str] | None = None, path: Path = ws
    ) -> dict[str, object]:
        seen.add(command)
        return check(repo(path, *command.split()[1:], *args, "--json", env=env), command, ok=ok)

    run("repo init", "--root-keys", "1", "--root-threshold", "1")
    (tmp_path / "a.txt").write_text("a")
    run("repo add-target", str(tmp_path / "a.txt"), "--name", "dir/a.txt")
    run("repo publish")
    run("repo push", "--to", str(served))
    run("repo pull", "--from", str(served))
    run("repo status")
    run("repo keys")
    run("repo check", "--within", "1d")
    run("repo roots")
    run("repo bump-online", "--force")
    run("repo timestamp")
    run("repo set-expiry", "snapshot", "20d")
    run("repo remove-target", "a.txt")
    run("repo clean")
    keygen_env = operator_env(STELLA_CI_PASSPHRASE="ci secret")
    run("repo keygen", "ci", env=keygen_env, path=tmp_path / "ci")
    run("repo delegate", "ci", "--paths", "ci/*", "--key", str(tmp_path / "ci" / "ci.pub"))
    run("repo clean")
    run("repo export-keys", str(tmp_path / "out"), "--roles", "timestamp")
    run(
        "repo change-passphrase",
        str(ws / "keys" / "timestamp.pem"),
        env=operator_env(STELLA_TIMESTAMP_NEW_PASSPHRASE=PASSPHRASES["TIMESTAMP"]),
    )
    run("repo root set-threshold", "targets", "1")
    run(
        "repo root add-key",
        "--role",
        "targets",
        "--name",
        "targets9",
        env=operator_env(STELLA_TARGETS9_PASSPHRASE="nine"),
    )
    keyid = next(
        k["keyid"]
        for k in run("repo keys")["result"]["keys"]  # type: ignore[index]
        if k["file"] == "keys/targets9.pem"
    )
    run("repo root revoke-key", keyid, "--role", "targets")
    run("repo sign", "root", "--key", str(ws / "keys" / "timestamp.pem"), ok=False)  # not a root key
    run("repo add-signature", "root", "--keyid", "00000000", "--sig", str(tmp_path / "a.txt"), ok=False)
    run("repo commit", ok=False)  # unsigned
    run("repo clean")
    staged = run("repo rotate", "timestamp", env=operator_env(), ok=True)
    assert "rotated timestamp" in staged["result"]["message"]  # type: ignore[index]
    failed = run("repo publish", ok=False)  # nothing staged: a usage error, still an envelope
    assert failed["error"]["exit_code"] == 2  # type: ignore[index]
    operator_paths = {p for p in command_paths() if p.startswith("repo ")} - NO_JSON
    assert operator_paths <= seen, f"commands without an envelope case: {sorted(operator_paths - seen)}"
    assert clean_env()  # the helper stays importable for the other tests


def wait_for_request(server: FaultyServer, suffix: str, process: subprocess.Popen[str]) -> None:
    """Until the server has received a request for `suffix` (the client process is then in
    that download); fails if the process exits first or nothing arrives within a minute."""
    deadline = time.monotonic() + 60
    while not any(path.endswith(suffix) for path in server.requests):
        assert process.poll() is None, f"the client exited ({process.returncode}) before requesting {suffix}"
        assert time.monotonic() < deadline, f"no request for {suffix}: {server.requests}"
        time.sleep(0.01)  # polling interval of the condition above, not a guess at timing


def test_ctrl_c_under_json_still_prints_the_envelope(synced: Client, server: FaultyServer) -> None:
    server.inject("/metadata/timestamp.json", "slow", 1.0)
    server.take_requests()
    # SIGINT as a terminal delivers it: with its default disposition restored in the child,
    # whatever the runner inherited (a background job of a non-interactive shell, nohup and
    # some CI runners start with SIGINT ignored, and Python then never raises KeyboardInterrupt)
    process = synced.popen(
        "sync",
        "--json",
        stdout=-1,
        stderr=-1,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Ctrl-C once the sync is in the (slow) download, not while Python is still importing:
    # the server holding the request is the condition, however loaded the machine is
    wait_for_request(server, "/metadata/timestamp.json", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    document = json.loads(out)
    assert process.returncode == 130 and document["ok"] is False, (out, err)
    assert document["error"]["exit_code"] == 130 and document["command"] == "sync"
    assert "cached trust is unchanged" in err


@pytest.mark.parametrize("command", ["status", "sync"])
def test_text_mode_prints_no_json(synced: Client, command: str) -> None:
    result = synced.run(command)
    assert result.code == 0 and not result.out.lstrip().startswith("{")
