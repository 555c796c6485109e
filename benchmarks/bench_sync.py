"""Sync and start-up benchmark on a demo-sized repository. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_sync.py [--rounds 40]

Reports: requests and bytes of a cold and an idle sync; the median idle sync in process
against the same refresh with a bare python-tuf Updater (ratio; target <= 1.1x); the
median wall time of `trust status --json` and `trust --help` as processes against
`python -c "import tuf.ngclient, httpx, pydantic_settings, typer"` (ratio; target
<= 0.7x), plus the import floor of the settings library the status command needs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RepositoryServer

TARGETS = ["sigstore-services-v1.json", "rekor-key-v1.pub", "rekor-key-v2.pub", "fulcio-chain.pem"]


def median_seconds(fn: object, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def process_median(argv: list[str], rounds: int, env: dict[str, str]) -> float:
    def run() -> None:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    run()  # warm the page cache and .pyc files
    return median_seconds(run, rounds)


def bare_updater_factory(work: Path, url: str, root: bytes, httpx_fetcher: bool = False) -> object:
    """The same refresh with python-tuf alone: Updater, refresh, check each cached target.

    With `httpx_fetcher`, the bare Updater uses stella-trust's fetcher, which separates
    the cost of the stack's HTTP client from the cost of stella-trust's own safety work.
    """
    from tuf.ngclient import Updater

    from stella_trust._internal.tuf.fetcher import HttpxFetcher

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
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--process-rounds", type=int, default=15)
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
            cold = sync(settings, store)
            cold_requests = len(server.take_requests())
            idle = sync(settings, store)
            idle_requests = len(server.take_requests())
            print(
                f"cold sync : {cold_requests} requests, {cold.bytes_received} bytes, "
                f"{len(cold.downloaded)} targets downloaded"
            )
            print(
                f"idle sync : {idle_requests} requests, {idle.bytes_received} bytes, "
                f"{len(idle.downloaded)} targets downloaded"
            )

            ours = median_seconds(lambda: sync(settings, store), args.rounds)
            bare = median_seconds(
                bare_updater_factory(work, server.url, demo.root_path.read_bytes()), args.rounds
            )
            bare_httpx = median_seconds(
                bare_updater_factory(work, server.url, demo.root_path.read_bytes(), True),
                args.rounds,
            )
            print(
                f"idle sync median: stella-trust {ours * 1000:.2f} ms, bare python-tuf Updater "
                f"{bare * 1000:.2f} ms, ratio {ours / bare:.2f}x (target <= 1.10x)"
            )
            print(
                f"  same bare Updater with stella-trust's httpx fetcher: {bare_httpx * 1000:.2f} ms; "
                f"stella-trust / that = {ours / bare_httpx:.2f}x (the cost of generations, lock, state)"
            )

            config.write_text(
                "attestor:\n  trust_repo:\n"
                f"    tuf_url: {server.url}\n    local_cache_path: {cache}\n"
                "    pinned_targets: [rekor-key-v1, rekor-key-v2]\n"
            )
            py = sys.executable
            n = args.process_rounds
            baseline = process_median(
                [py, "-c", "import tuf.ngclient, httpx, pydantic_settings, typer"], n, env
            )
            status = process_median(
                [py, "-m", "stella_trust", "--config", str(config), "status", "--json"], n, env
            )
            helptext = process_median([py, "-m", "stella_trust", "--help"], n, env)
            floor = process_median(
                [py, "-c", "import pydantic_settings, yaml, tuf.api.metadata, typer"], n, env
            )
            interpreter = process_median([py, "-c", "pass"], n, env)
            print(f"import line (tuf.ngclient, httpx, pydantic_settings, typer): {baseline * 1000:.0f} ms")
            print(
                f"trust status --json: {status * 1000:.0f} ms, ratio {status / baseline:.2f}x "
                "(target <= 0.70x)"
            )
            print(
                f"trust --help       : {helptext * 1000:.0f} ms, ratio {helptext / baseline:.2f}x "
                "(target <= 0.70x)"
            )
            print(
                f"floor for status (pydantic_settings, yaml, tuf.api.metadata, typer imports): "
                f"{floor * 1000:.0f} ms, ratio {floor / baseline:.2f}x; bare interpreter "
                f"{interpreter * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
