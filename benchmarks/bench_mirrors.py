"""What mirrors cost an idle sync (net/mirrors.py): figures, not assertions.

The demo repository served on 127.0.0.1 (origin and a second server of the same files), a
host's real sync (HttpxFetcher, python-tuf, the store) in process. For each arrangement of the
mirror list: the median idle sync and the requests it sends.

    .venv/bin/python benchmarks/bench_mirrors.py [--runs 30]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RecordingHandler, RepositoryServer


class Unavailable(RecordingHandler):
    """Every request answered 503 (a mirror whose backend is down)."""

    def do_GET(self) -> None:
        self.send_error(503)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo = DemoRepository(root / "repository")
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
        with (
            RepositoryServer(demo.repo.path) as origin,
            RepositoryServer(demo.repo.path) as mirror,
            RepositoryServer(demo.repo.path, handler=Unavailable) as unavailable,
        ):
            cases = {
                "origin only (no mirrors)": [],
                "healthy mirror first": [mirror.url],
                "refused mirror first": [refused],
                "503 mirror first": [unavailable.url],
                "refused, then 503, then origin": [refused, unavailable.url],
            }
            print(f"| mirrors | idle sync, median of {runs} | requests per idle sync |")
            print("|---|---|---|")
            for index, (name, mirrors) in enumerate(cases.items()):
                settings = load_settings(
                    root / "absent.yaml",
                    {"tuf_url": origin.url, "mirrors": mirrors, "local_cache_path": root / f"cache{index}"},
                )
                store = Store.of(settings)
                store.write_anchor(demo.repo.root_bytes(1))
                sync(settings, store)  # cold
                times, requests = [], 0
                for _ in range(runs):
                    started = time.perf_counter()
                    result = sync(settings, store)
                    times.append(time.perf_counter() - started)
                    requests = result.requests
                    assert not result.changed
                print(f"| {name} | {statistics.median(times) * 1000:.1f} ms | {requests} |")
        closed.close()


if __name__ == "__main__":
    main()
