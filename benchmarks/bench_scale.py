"""How sync and reads scale with the repository (issue 13). Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10,1000,10000,100000] [--roots 200]
                                               [--rounds 5] [--idle-rounds 300] [--bins]

For each size: the demo repository plus N filler targets in the top-level targets (or, with
--bins, in 50 delegated bins from 1000 targets on), served on 127.0.0.1. Measured in the same
run, against a bare python-tuf Updater doing the same work (refresh, then look up every target
the host holds: the pinned ones and the chain the service map names): cold sync, idle sync and a
renewal sync (only a new timestamp, the daily job; medians), `open_trust()` on the synced cache,
`trust status --json` as a process (median), and the peak RSS of a cold sync in a fresh process
(`trust init` + first sync vs a bare Updater script). Then the same for a host anchored at root
v1 of a repository with `--roots` root versions. Goals (issue 24, re-baselined against what the
stack allows): idle at 10 targets <= 1.1x a bare Updater given stella-trust's own fetcher (httpx
with its deadline hardening, printed beside the default one); idle anchored at root v1 of 200
roots <= 1.5x a bare Updater; cold at 100k targets <= 1.3x with peak RSS unchanged. The idle goal at
10 targets is taken apart in bench_idle.py (nginx beside the test server, the cost in milliseconds,
what the checks cost), which shares this module's host set-up and bare Updater.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater, UpdaterConfig

from stella_trust._internal.anchor import initialise, record_sources
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.api import open_trust
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RepositoryServer

PINNED = ["rekor-key-v1.pub", "sigstore-services-v1.json"]
LIMIT = 64_000_000  # 100k targets are ~5 MB of targets.json, above python-tuf's default limit
BINS = 50


def median_ms(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


def filler(demo: DemoRepository, count: int, bins: bool) -> None:
    """N metadata-only targets (nothing to download: only the pinned ones are fetched), in the
    top-level targets (the heavy case: every sync parses them) or in 50 delegated bins."""
    repo = demo.repo
    bins = bins and count >= 1000
    if bins:
        for index in range(BINS):
            repo.add_delegated_role(f"bin-{index:02d}", [f"bin-{index:02d}/*"])
    for index in range(count):
        data = f"filler {index}".encode()
        info = TargetFile(len(data), {"sha256": hashlib.sha256(data).hexdigest()}, "")
        if bins:
            name = f"bin-{index % BINS:02d}/t{index}.txt"
            info.path = name
            repo.delegated[f"bin-{index % BINS:02d}"].signed.targets[name] = info
        else:
            info.path = f"filler/t{index}.txt"
            repo.targets.signed.targets[info.path] = info
    for md in repo.delegated.values():
        md.signed.version += 1
    repo.publish()


BARE = """
import sys, tempfile
from tuf.ngclient import Updater, UpdaterConfig
url, root = sys.argv[1], open(sys.argv[2], "rb").read()
config = UpdaterConfig(targets_max_length=64_000_000, snapshot_max_length=64_000_000)
with tempfile.TemporaryDirectory() as tmp:
    u = Updater(tmp, url + "/metadata/", tmp, url + "/targets/", config=config, bootstrap=root)
    u.refresh()
    for name in sys.argv[3:]:
        info = u.get_targetinfo(name)
        if u.find_cached_target(info) is None:
            u.download_target(info)
"""


def peak_rss_mib(argv: list[str], env: dict[str, str]) -> float:
    """Peak RSS of a child process (GNU time's %M, KiB)."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True, text=True, check=False
    )
    return int(done.stderr.strip().splitlines()[-1]) / 1024


@dataclass
class Host:
    """A host synced once from `url` as `trust init` leaves it (the agent's memo kept), and a bare
    Updater's directory holding the same targets, with what each cold sync took."""

    url: str
    config: Path
    settings: TrustRepoSettings
    store: Store
    memo: VerificationMemo
    held: list[str]  # every target the host holds: the pinned ones and the service map's chain
    bare_dir: Path
    limits: UpdaterConfig
    cold_ms: float
    bare_cold_ms: float


def prepare_host(demo: DemoRepository, url: str, work: Path, label: str) -> Host:
    """`trust init` of a host on `url` (its first sync timed), then a bare Updater's first refresh
    and downloads of the same targets (timed): the starting point of every idle figure."""
    config = work / f"{label}.yaml"
    flags = {
        "tuf_url": url,
        "local_cache_path": work / f"cache-{label}",
        "pinned_targets": PINNED,
        "metadata_limits": {"targets": LIMIT, "snapshot": LIMIT},
    }
    settings, _ = initialise(
        config, flags, root_file=demo.root_path, root_sha256=None, trust_on_first_use=False, force=False
    )
    store = Store.of(settings)
    started = time.perf_counter()
    memo = VerificationMemo()  # the agent keeps one memo for its life
    first_sync = sync(settings, store, memo=memo)
    cold = (time.perf_counter() - started) * 1e3
    record_sources(config, settings, first_sync.sources)  # as `trust init` does
    # the bare Updater looks up every target this host holds: the pinned ones and what the
    # service map names (its chain), so both sides do the same look-ups
    held = sorted(first_sync.targets)
    bare_dir = work / f"bare-{label}"
    bare_dir.mkdir()
    limits = UpdaterConfig(targets_max_length=LIMIT, snapshot_max_length=LIMIT)
    started = time.perf_counter()
    first = Updater(
        str(bare_dir),
        f"{url}/metadata/",
        str(bare_dir),
        f"{url}/targets/",
        config=limits,
        bootstrap=demo.root_path.read_bytes(),
    )
    first.refresh()
    for name in held:
        info = first.get_targetinfo(name)
        assert info is not None
        first.download_target(info)
    bare_cold = (time.perf_counter() - started) * 1e3
    return Host(url, config, load_settings(config), store, memo, held, bare_dir, limits, cold, bare_cold)


def bare_idle_sync(host: Host, ours: bool) -> None:
    """The same idle refresh with python-tuf alone: a new Updater, refresh, then look up every
    target the host holds and check its cached copy; `ours`: given stella-trust's fetcher (httpx,
    per-request deadline), as the goal's baseline is, else python-tuf's default one."""
    fetcher = HttpxFetcher() if ours else None
    updater = Updater(
        str(host.bare_dir),
        f"{host.url}/metadata/",
        str(host.bare_dir),
        f"{host.url}/targets/",
        config=host.limits,
        bootstrap=None,
        fetcher=fetcher,
    )
    updater.refresh()
    for name in host.held:
        info = updater.get_targetinfo(name)
        assert info is not None and updater.find_cached_target(info) is not None
    if fetcher is not None:
        fetcher.close()


def measure(
    label: str,
    demo: DemoRepository,
    work: Path,
    rounds: int,
    env: dict[str, str],
    idle_rounds: int | None = None,
) -> None:
    """Every figure of one repository; the idle syncs take `idle_rounds` interleaved rounds
    (default `rounds`): an idle sync of a small repository costs milliseconds, and its median
    over a few rounds moves by more than the goal's margin from run to run."""
    with RepositoryServer(demo.repo.path) as server:
        host = prepare_host(demo, server.url, work, label)
        config, settings, store, agent = host.config, host.settings, host.store, host.memo
        cold, bare_cold, held = host.cold_ms, host.bare_cold_ms, host.held

        def bare_idle(ours: bool = False) -> None:
            """python-tuf alone; `ours`: given stella-trust's fetcher (httpx, per-request deadline)."""
            bare_idle_sync(host, ours)

        ours_idle, bare_idles, fetcher_idles = [], [], []
        for _ in range(idle_rounds or rounds):  # interleaved: drift on a shared machine hits all alike
            ours_idle.append(median_ms(lambda: sync(settings, store, memo=agent), 1))
            bare_idles.append(median_ms(bare_idle, 1))
            fetcher_idles.append(median_ms(lambda: bare_idle(ours=True), 1))
        idle, bare = statistics.median(ours_idle), statistics.median(bare_idles)
        bare_ours = statistics.median(fetcher_idles)
        renewal, bare_renewal = [], []
        for _ in range(rounds):  # the daily job: a new timestamp, nothing else changed
            demo.repo.resign_timestamp()
            renewal.append(median_ms(lambda: sync(settings, store, memo=agent), 1))
            bare_renewal.append(median_ms(bare_idle, 1))
        renew, bare_renew = statistics.median(renewal), statistics.median(bare_renewal)
        reads = median_ms(lambda: open_trust(config_path=config), rounds * 4)
        status_argv = [sys.executable, "-m", "stella_trust", "--config", str(config), "status", "--json"]
        status = median_ms(lambda: subprocess.run(status_argv, env=env, capture_output=True, check=True), 3)
        cache = work / f"rss-{label}"
        ours_rss = peak_rss_mib(
            [
                sys.executable,
                "-m",
                "stella_trust",
                "--config",
                str(config),
                "--cache-dir",
                str(cache),
                "init",
                "--tuf-url",
                server.url,
                "--root",
                str(demo.root_path),
                "--force",
            ],
            env,
        )
        bare_rss = peak_rss_mib([sys.executable, "-c", BARE, server.url, str(demo.root_path), *held], env)
        print(
            f"{label:>16}: cold {cold:8.1f} ms vs bare {bare_cold:8.1f} ({cold / bare_cold:4.2f}x) | "
            f"idle {idle:7.1f} vs {bare:7.1f} ({idle / bare:4.2f}x), "
            f"vs {bare_ours:7.1f} with our fetcher ({idle / bare_ours:4.2f}x) | "
            f"renewal {renew:7.1f} vs {bare_renew:7.1f} ({renew / bare_renew:4.2f}x) | "
            f"open_trust {reads:6.2f} ms | status {status:5.0f} ms | "
            f"RSS {ours_rss:5.0f} vs {bare_rss:5.0f} MiB ({ours_rss / bare_rss:4.2f}x)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    parser.add_argument("--roots", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bins", action="store_true", help="filler in 50 delegated bins, not top-level")
    parser.add_argument(
        "--idle-rounds",
        type=int,
        default=300,
        help="interleaved idle-sync rounds for repositories of at most 1000 targets and for the roots "
        "(milliseconds each; --rounds for the large ones)",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    os.environ.update({"NO_PROXY": env["NO_PROXY"], "no_proxy": env["NO_PROXY"]})
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        measure("warm-up (ignore)", DemoRepository(work / "repo-warm"), work, 1, env)  # imports, caches
        for size in [int(s) for s in args.sizes.split(",") if s]:
            demo = DemoRepository(work / f"repo-{size}")
            filler(demo, size, args.bins)
            idle = args.idle_rounds if size <= 1000 else None
            measure(f"{size} targets", demo, work, args.rounds, env, idle)
        if args.roots > 1:
            demo = DemoRepository(work / "repo-roots")
            for _ in range(args.roots - 1):
                demo.rotate("root")
            measure(f"{args.roots} roots", demo, work, args.rounds, env, args.idle_rounds)


if __name__ == "__main__":
    main()
