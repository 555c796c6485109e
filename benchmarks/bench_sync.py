"""Sync and start-up benchmark on a demo-sized repository. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_sync.py [--rounds 300] [--process-rounds 21]
        [--no-bytecode-cache]

Reports: requests and bytes of a cold and an idle sync; the median idle sync in process
against the same refresh with a bare python-tuf Updater, default and given stella-trust's fetcher
(interleaved rounds; goal, issue 24: <= 1.1x the one with our fetcher; 300 rounds by default,
about 6 s: with 40 the ratio moved by 0.03x from run to run, more than what is measured); then the
start-up of `trust status --json` and `trust --help` as processes against the import line
`python -c "import tuf.ngclient, httpx, pydantic_settings, typer"` and the import line of only
the modules status needs (STATUS_FLOOR, printed in the same run; goal, issue 24: status <= 1.1x
that floor), and the bare interpreter for scale.

The processes run interleaved (one of each per round, the order rotating), so a busy machine
slows every command alike; the figures are per-command medians and the ratios are taken
between them. Every process reads compiled bytecode, as an installed package does (pip
compiles it): a private PYTHONPYCACHEPREFIX is filled by a warm-up run, also when the
environment sets PYTHONDONTWRITEBYTECODE. `--no-bytecode-cache` keeps the environment as it
is instead (an editable checkout under PYTHONDONTWRITEBYTECODE compiles stella-trust's own
modules from source in every process; the third-party ones have their bytecode either way).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stella_trust._cli.launch import STARTUP_YOUNG_THRESHOLD
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RepositoryServer

TARGETS = ["sigstore-services-v1.json", "rekor-key-v1.pub", "rekor-key-v2.pub", "fulcio-chain.pem"]
# The third-party modules `trust status` cannot do without: settings (pydantic-settings, YAML),
# signature checks (python-tuf's metadata API), the CLI (typer), certificate and key facts
# (cryptography), the Sigstore trusted-root model the verifier uses (sigstore_models).
STATUS_FLOOR = (
    "pydantic_settings",
    "yaml",
    "tuf.api.metadata",
    "typer",
    "cryptography.x509",
    "sigstore_models.trustroot.v1",
)


def interleaved_in_process(calls: list[Callable[[], object]], rounds: int) -> list[float]:
    """Median seconds of each call, one of each per round (the order rotating), after one warm-up
    each: drift on a shared machine slows every call alike (issue 24's rule for benchmarks)."""
    for call in calls:
        call()
    samples: list[list[float]] = [[] for _ in calls]
    for index in range(rounds):
        shift = index % len(calls)
        for position in [*range(shift, len(calls)), *range(shift)]:
            started = time.perf_counter()
            calls[position]()
            samples[position].append(time.perf_counter() - started)
    return [statistics.median(values) for values in samples]


def interleaved_medians(commands: dict[str, list[str]], rounds: int, env: dict[str, str]) -> dict[str, float]:
    """Median wall time of each command, run one after the other in every round (the order
    rotates by one each round) after one warm-up run each (page cache, bytecode)."""

    def run(argv: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return time.perf_counter() - started

    names = list(commands)
    for name in names:
        run(commands[name])
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(run(commands[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def bare_updater_factory(work: Path, url: str, root: bytes, httpx_fetcher: bool = False) -> object:
    """The same refresh with python-tuf alone: Updater, refresh, check each cached target.

    With `httpx_fetcher`, the bare Updater uses stella-trust's fetcher, which separates
    the cost of the stack's HTTP client from the cost of stella-trust's own safety work.
    """
    from tuf.ngclient import Updater

    from stella_trust._internal.net.fetcher import HttpxFetcher

    suffix = "-httpx" if httpx_fetcher else ""
    metadata_dir, target_dir = work / f"bare-metadata{suffix}", work / f"bare-targets{suffix}"
    metadata_dir.mkdir()
    target_dir.mkdir()
    updater = Updater(
        str(metadata_dir), f"{url}/metadata/", str(target_dir), f"{url}/targets/", bootstrap=root
    )
    updater.refresh()
    for name in TARGETS:
        info = updater.get_targetinfo(name)
        assert info is not None
        updater.download_target(info)

    def idle() -> None:
        fetcher = HttpxFetcher() if httpx_fetcher else None
        u = Updater(
            str(metadata_dir),
            f"{url}/metadata/",
            str(target_dir),
            f"{url}/targets/",
            fetcher=fetcher,
            bootstrap=None,
        )
        u.refresh()
        for name in TARGETS:
            info = u.get_targetinfo(name)
            assert info is not None and u.find_cached_target(info) is not None
        if fetcher is not None:
            fetcher.close()

    return idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--process-rounds", type=int, default=21)
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep the environment's bytecode setting (see above) instead of a private cache",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    os.environ.update({"NO_PROXY": env["NO_PROXY"], "no_proxy": env["NO_PROXY"]})

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        work = Path(tmp)
        demo = DemoRepository(work / "repo")
        with RepositoryServer(demo.repo.path) as server:
            config = work / "trust.yaml"
            cache = work / "cache"
            settings = load_settings(
                config,
                {
                    "tuf_url": server.url,
                    "local_cache_path": cache,
                    "pinned_targets": ["rekor-key-v1", "rekor-key-v2"],
                },
            )
            store = Store(cache)
            store.write_anchor(demo.root_path.read_bytes())

            server.take_requests()
            agent = VerificationMemo()  # the agent keeps one memo for its life
            cold = sync(settings, store, memo=agent)
            cold_requests = len(server.take_requests())
            idle = sync(settings, store, memo=agent)
            idle_requests = len(server.take_requests())
            print(
                f"cold sync : {cold_requests} requests, {cold.bytes_received} bytes, "
                f"{len(cold.downloaded)} targets downloaded"
            )
            print(
                f"idle sync : {idle_requests} requests, {idle.bytes_received} bytes, "
                f"{len(idle.downloaded)} targets downloaded"
            )

            bare_idle = bare_updater_factory(work, server.url, demo.root_path.read_bytes())
            bare_httpx_idle = bare_updater_factory(work, server.url, demo.root_path.read_bytes(), True)
            ours, bare, bare_httpx = interleaved_in_process(
                [lambda: sync(settings, store, memo=agent), bare_idle, bare_httpx_idle], args.rounds
            )
            print(
                f"idle sync median: stella-trust {ours * 1000:.2f} ms, bare python-tuf Updater "
                f"{bare * 1000:.2f} ms, ratio {ours / bare:.2f}x"
            )
            print(
                f"  same bare Updater with stella-trust's httpx fetcher: {bare_httpx * 1000:.2f} ms; "
                f"stella-trust / that = {ours / bare_httpx:.2f}x "
                "(goal <= 1.10x, issue 24: generations, lock, state)"
            )

            config.write_text(
                "attestor:\n  trust_repo:\n"
                f"    tuf_url: {server.url}\n    local_cache_path: {cache}\n"
                "    pinned_targets: [rekor-key-v1, rekor-key-v2]\n"
            )
            startup(config, work, args.process_rounds, env, bytecode_cache=not args.no_bytecode_cache)


def startup(config: Path, work: Path, rounds: int, env: dict[str, str], *, bytecode_cache: bool) -> None:
    """`trust status --json` and `trust --help` against the import line, interleaved."""
    env = dict(env)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    py = sys.executable
    medians = interleaved_medians(
        {
            "import line": [py, "-c", "import tuf.ngclient, httpx, pydantic_settings, typer"],
            "status": [py, "-m", "stella_trust", "--config", str(config), "status", "--json"],
            "help": [py, "-m", "stella_trust", "--help"],
            "floor": [py, "-c", f"import {', '.join(STATUS_FLOOR)}"],
            # the same imports started and ending as `trust` does (launch.py's collector threshold,
            # app._exit_without_collection): what stella-trust itself adds
            "floor, trust's exit": [
                py,
                "-c",
                f"import gc; gc.set_threshold({STARTUP_YOUNG_THRESHOLD}, *gc.get_threshold()[1:]); "
                f"import {', '.join(STATUS_FLOOR)}; gc.freeze()",
            ],
            "interpreter": [py, "-c", "pass"],
        },
        rounds,
        env,
    )
    baseline, floor = medians["import line"], medians["floor"]
    condition = "bytecode cached" if bytecode_cache else "environment as is"
    print(
        f"start-up, medians of {rounds} interleaved runs ({condition}):\n"
        f"  import line (tuf.ngclient, httpx, pydantic_settings, typer): {baseline * 1000:.0f} ms\n"
        f"  floor for status (imports of {', '.join(STATUS_FLOOR)}): {floor * 1000:.0f} ms "
        f"({floor / baseline:.2f}x the import line); bare interpreter {medians['interpreter'] * 1000:.0f} ms"
    )
    print(
        f"  trust status --json: {medians['status'] * 1000:.0f} ms, ratio {medians['status'] / floor:.2f}x "
        f"the floor (goal <= 1.10x; issue 24), {medians['status'] / baseline:.2f}x the import line"
    )
    frozen = medians["floor, trust's exit"]
    print(
        f"  floor started and ending as trust does (collector threshold, no final collection): "
        f"{frozen * 1000:.0f} ms; "
        f"trust status --json / that = {medians['status'] / frozen:.2f}x (what stella-trust adds)"
    )
    print(
        f"  trust --help        : {medians['help'] * 1000:.0f} ms, "
        f"ratio {medians['help'] / baseline:.2f}x the import line"
    )


if __name__ == "__main__":
    main()
