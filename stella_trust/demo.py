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


def _isolated_env(tuf_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_demo(keep: bool = False) -> int:
    from stella_trust.repository.demo import DemoRepository
    from stella_trust.repository.serve import RepositoryServer

    workdir = Path(tempfile.mkdtemp(prefix="stella-trust-demo-"))
    print(f"# demo workspace: {workdir}")
    try:
        demo = DemoRepository(workdir / "repository")
        print("# built a TUF repository: root (3 keys, threshold 2), targets, snapshot, timestamp;")
        print("#   targets: " + ", ".join(sorted(demo.repo.targets.signed.targets)))
        with RepositoryServer(demo.repo.path) as server:
            print(f"# serving it on {server.url}\n")
            config, cache = workdir / "trust.yaml", workdir / "cache"
            base = ["--config", str(config), "--cache-dir", str(cache)]
            steps = [
                [
                    *base,
                    "init",
                    "--tuf-url",
                    server.url,
                    "--root",
                    str(demo.root_path),
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
            env = _isolated_env(server.url)
            for number, args in enumerate(steps):
                server.take_requests()
                print("$ trust " + " ".join(shlex.quote(a) for a in args))
                sys.stdout.flush()
                done = subprocess.run([sys.executable, "-m", "stella_trust", *args], env=env, check=False)
                print()
                if done.returncode != 0:
                    print(f"# demo step failed with exit code {done.returncode}")
                    return done.returncode
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
