"""`open_trust()` on an unchanged cache: what an attestor pays per read. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_open_trust.py [--rounds 300]

Reports the median and p99 of `open_trust(config_path=...)` on a synced demo cache (goal:
<= 1 ms median, <= 3 ms p99, issue 13), the share of it spent loading settings and
re-verifying, and the time to notice a cache edited on disk (must still be detected).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from stella_trust._internal.anchor import initialise
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.api import open_trust
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RepositoryServer


def timings(fn: object, rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    for key in [k for k in os.environ if k.startswith("STELLA_")]:
        del os.environ[key]
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        work = Path(tmp)
        demo = DemoRepository(work / "repo")
        with RepositoryServer(demo.repo.path) as server:
            config = work / "trust.yaml"
            flags = {
                "tuf_url": server.url,
                "local_cache_path": work / "cache",
                "pinned_targets": ["rekor-key-v1"],
            }
            settings, _ = initialise(
                config,
                flags,
                root_file=demo.root_path,
                root_sha256=None,
                trust_on_first_use=False,
                force=False,
            )
            sync(settings, Store.of(settings))
        open_trust(config_path=config)  # warm: imports, page cache
        median, p99 = timings(lambda: open_trust(config_path=config), args.rounds)
        settings_median, _ = timings(lambda: load_settings(config, {}), args.rounds)
        store = Store.of(settings)
        memo = VerificationMemo()
        view_median, _ = timings(lambda: load_view(settings, store, memo=memo), args.rounds)
        print(
            f"open_trust, unchanged cache : median {median * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms "
            "(goal <= 1 ms, <= 3 ms)"
        )
        print(f"  settings load             : median {settings_median * 1e3:.2f} ms")
        print(f"  re-verify + view          : median {view_median * 1e3:.2f} ms")
        target = next((store.current().path / "targets").iterdir())  # type: ignore[union-attr]
        data = target.read_bytes()
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        started = time.perf_counter()
        try:
            open_trust(config_path=config)
            print("EDITED CACHE NOT DETECTED")
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1e3
            print(f"edited cache: refused in {elapsed:.2f} ms ({type(exc).__name__})")


if __name__ == "__main__":
    main()
