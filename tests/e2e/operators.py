"""Operator-side helpers shared by the `trust repo` tests: passphrases, the CLI in a
subprocess (optionally under faketime), and demo content a client can sync."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import Result, clean_env, ok, under_clock

PASSPHRASES = {
    "ROOT": "correct horse root one",
    "ROOT2": "correct horse root two",
    "ROOT3": "correct horse root three",
    "TARGETS": "targets ci secret",
    "TARGETS2": "targets release secret",
    "SNAPSHOT": "snapshot secret",
    "TIMESTAMP": "timestamp secret",
}


def operator_env(**extra: str) -> dict[str, str]:
    env = clean_env(**{f"STELLA_{k}_PASSPHRASE": v for k, v in PASSPHRASES.items()})
    env.update(extra)
    return env


def repo(path: Path, *args: str, env: dict[str, str] | None = None, clock: str | None = None) -> Result:
    """`trust repo ARGS --path PATH` in a subprocess; `clock` runs it under faketime
    ('+3d' or an absolute time), as the client tests do."""
    faked = under_clock(clock)
    done = subprocess.run(
        [*faked, sys.executable, "-m", "stella_trust", "repo", *args, "--path", str(path)],
        capture_output=True,
        text=True,
        env=env or operator_env(),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def no_secret_leaked(result: Result) -> None:
    for secret in PASSPHRASES.values():
        assert secret not in result.out and secret not in result.err


def publish_demo_content(path: Path, tmp_path: Path) -> None:
    """A service map and the Rekor key it names, so a client sync completes."""
    from stella_trust.demo.repository import FULCIO_CHAIN, fulcio_chain, rekor_keys, service_map

    pem, _ = rekor_keys()
    files = {
        "rekor-key-v1.pub": pem,
        "sigstore-services-v1.json": service_map(pem),
        FULCIO_CHAIN: fulcio_chain(datetime.now(UTC)),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        ok(repo(path, "add-target", str(tmp_path / name), "--name", name))
    ok(repo(path, "publish"))
