"""`trust demo`: the whole client workflow against a throwaway local repository.

Runs the real `trust` command in subprocesses, exactly as a user would type it, so
what it prints is what a user sees. Uses only loopback, a temp directory and a
throwaway config and cache; works on a fresh machine with no network.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _isolated_env() -> dict[str, str]:
    """This environment without STELLA_* (the demo must not use this host's config, cache or service
    map), with loopback exempt from any proxy, so the demo repository is reached directly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


DEMO_KEYS = ("ROOT", "ROOT2", "ROOT3", "TARGETS", "SNAPSHOT", "TIMESTAMP")


def _run(args: list[str], env: dict[str, str]) -> int:
    """One step as a user would type it, echoed first; a failure is reported and its code returned,
    not raised."""
    print("$ trust " + " ".join(shlex.quote(a) for a in args))
    sys.stdout.flush()
    done = subprocess.run([sys.executable, "-m", "stella_trust", *args], env=env, check=False)
    print()
    if done.returncode != 0:
        print(f"# demo step failed with exit code {done.returncode}")
    return done.returncode


def _demo_content(directory: Path) -> dict[str, tuple[Path, str | None]]:
    """Sigstore-shaped files for the operator to publish: name -> (file, custom JSON)."""
    from datetime import UTC, datetime

    from stella_trust.demo.repository import fulcio_chain, rekor_keys, service_map

    directory.mkdir(parents=True)
    rekor_v1, rekor_v2 = rekor_keys()
    files = {
        "rekor-key-v1.pub": (rekor_v1, '{"sigstore": {"usage": "Rekor"}}'),
        "rekor-key-v2.pub": (rekor_v2, '{"sigstore": {"usage": "Rekor"}}'),
        "fulcio-chain.pem": (fulcio_chain(datetime.now(UTC)), '{"sigstore": {"usage": "Fulcio"}}'),
        "sigstore-services-v1.json": (service_map(rekor_v1), None),
    }
    placed = {}
    for name, (data, custom) in files.items():
        (directory / name).write_bytes(data)
        placed[name] = (directory / name, custom)
    return placed


def run_demo(keep: bool = False) -> int:
    """Operator side with `trust repo`, then the client side against it on 127.0.0.1."""
    from stella_trust.repository.serve import RepositoryServer

    workdir = Path(tempfile.mkdtemp(prefix="stella-trust-demo-"))
    print(f"# demo workspace: {workdir}")
    try:
        tuf = workdir / "tuf"
        env = _isolated_env()
        env.update({f"STELLA_{key}_PASSPHRASE": f"demo-only-{key.lower()}" for key in DEMO_KEYS})
        print("# operator: create and publish a TUF repository (key passphrases come from")
        print("# STELLA_<KEY>_PASSPHRASE; throwaway demo values here)\n")
        steps = [["repo", "init", "--path", str(tuf), "--root-keys", "3", "--root-threshold", "2"]]
        for path, custom in _demo_content(workdir / "content").values():
            step = ["repo", "add-target", str(path), "--path", str(tuf)]
            steps.append(step + (["--custom", custom] if custom else []))
        steps.append(["repo", "publish", "--path", str(tuf)])
        for args in steps:
            if (code := _run(args, env)) != 0:
                return code
        with RepositoryServer(tuf / "repository") as server:
            print(f"# client: the repository is served on {server.url}\n")
            config, cache = workdir / "trust.yaml", workdir / "cache"
            base = ["--config", str(config), "--cache-dir", str(cache)]
            root = tuf / "repository" / "metadata" / "1.root.json"
            client_steps = [
                [
                    *base,
                    "init",
                    "--tuf-url",
                    server.url,
                    "--root",
                    str(root),
                    "--service-map",
                    "sigstore-services-v1",
                    "--pin",
                    "rekor-key-v1",
                    "--pin",
                    "rekor-key-v2",
                    "--no-sync",
                ],
                [*base, "sync"],
                [*base, "sync"],
                [*base, "status", "--show-keys", "--show-endpoints"],
            ]
            client_env = _isolated_env()
            for number, args in enumerate(client_steps):
                server.take_requests()
                if (code := _run(args, client_env)) != 0:
                    return code
                if number == 2:
                    paths = server.take_requests()
                    print(f"# an idle sync: the server saw {len(paths)} requests: {', '.join(paths)}\n")
        print("# demo complete" + ("" if keep else "; cleaning up"))
        return 0
    finally:
        if keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
