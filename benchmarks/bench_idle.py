"""Issue 24's idle-sync goal, measured two ways and taken apart. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_idle.py [--rounds 300] [--attribute]

The host of bench_scale.py's "10 targets" line (the demo repository plus 10 filler targets; the
pinned targets and the service map's chain held) syncs idle, interleaved round by round with a bare
python-tuf Updater given stella-trust's fetcher doing the same look-ups (bench_scale.py's
`bare_idle_sync`), against the same repository served two ways: by the test server (Python, in this
process) and by nginx (out of process, as CI installs it; skipped with a note when absent).
Printed per server: both medians, their ratio (the goal: at most 1.1x) and stella-trust's own cost
in milliseconds above the bare Updater. The ratio depends on how fast the server answers (the
bare Updater's time is mostly python-tuf and the server); the absolute cost is what stella-trust
adds, whatever serves it.

`--attribute` adds what-if rows on both servers, measurement only: the same sync with the
working copy's checks (the kinds check before python-tuf reads the copy, and the comparison with
the held generation) and the lock's checks (planted links, abandoned work, readers' access) switched
off in this process. Every one of them is on in the product (docs/design.md, decisions 16-18).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import bench_scale
from bench_fleet import free_port, nginx_config, wait_for_port
from bench_sync import interleaved_in_process

import stella_trust._internal.store as store_module
import stella_trust._internal.sync as sync_module
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository.serve import RepositoryServer

# What `--attribute` switches off, by the module attribute the sync calls it through, and what stands
# in for it: the answer the check gives on a sound cache, without its reads.
Checks = tuple[tuple[object, str, Callable[..., object]], ...]
WORKING_COPY_CHECKS: Checks = (
    (sync_module, "same_tree", lambda left, right: True),
    (store_module, "keep_only_our_kinds", lambda work: None),
)
LOCK_CHECKS: Checks = (
    (store_module, "refuse_planted_links", lambda root, top: None),
    (store_module, "remove_abandoned_work", lambda root, top: None),
    # the readers' group it answers (the writer chgrps what it writes to it): the directory's own
    (store_module, "share_with_readers", lambda root, top, current: os.stat(root).st_gid),
)


@contextlib.contextmanager
def nginx(root: Path, work: Path) -> Iterator[str | None]:
    """`root` served by nginx on 127.0.0.1, configured as bench_fleet.py's (one worker); None
    without nginx."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        yield None
        return
    port = free_port()
    run = work / "nginx"
    run.mkdir()
    conf = work / "nginx.conf"
    conf.write_text(nginx_config(run, root, [port], [run / "never-502"]))
    server = subprocess.Popen([binary, "-c", str(conf), "-p", str(run)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


@contextlib.contextmanager
def switched_off(checks: Checks) -> Iterator[None]:
    """The sync with `checks` replaced by their stand-ins in this process (measurement only), restored
    after."""
    saved = [(module, name, getattr(module, name)) for module, name, _ in checks]
    try:
        for module, name, stand_in in checks:
            setattr(module, name, stand_in)
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def variant(host: bench_scale.Host, checks: Checks) -> Callable[[], object]:
    """One idle sync of `host` with `checks` switched off."""

    def run() -> object:
        with switched_off(checks):
            return sync(host.settings, host.store, memo=host.memo)

    return run


def report(server: str, host: bench_scale.Host, rounds: int, attribute: bool) -> None:
    """Interleaved medians of the sync (and its what-if variants) and of the bare Updater."""
    calls: dict[str, Callable[[], object]] = {"stella-trust": variant(host, ())}
    if attribute:
        calls["  without the working copy's checks"] = variant(host, WORKING_COPY_CHECKS)
        calls["  without the lock's checks"] = variant(host, LOCK_CHECKS)
        calls["  without both"] = variant(host, WORKING_COPY_CHECKS + LOCK_CHECKS)
    calls["bare Updater + our fetcher"] = lambda: bench_scale.bare_idle_sync(host, True)
    medians = dict(zip(calls, interleaved_in_process(list(calls.values()), rounds), strict=True))
    baseline = "bare Updater + our fetcher"
    bare = medians[baseline]
    print(f"{server}: {rounds} interleaved rounds")
    for label, seconds in medians.items():
        extra = "" if label == baseline else f"  {seconds / bare:5.3f}x  {(seconds - bare) * 1e3:+5.2f} ms"
        print(f"  {label:38s} {seconds * 1e3:6.2f} ms{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--attribute", action="store_true", help="add the what-if rows (measurement only)")
    args = parser.parse_args()
    for module, name, _ in WORKING_COPY_CHECKS + LOCK_CHECKS:  # renamed since: say so, measure nothing
        if not callable(getattr(module, name, None)):
            raise SystemExit(f"{getattr(module, '__name__', module)}.{name} is gone: update bench_idle.py")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        demo = DemoRepository(work / "repo")
        bench_scale.filler(demo, 10, False)
        with RepositoryServer(demo.repo.path) as server:
            host = bench_scale.prepare_host(demo, server.url, work, "python")
            report("test server (Python, this process)", host, args.rounds, args.attribute)
        with nginx(demo.repo.path, work) as url:
            if url is None:
                print("nginx: not installed (apt-get install nginx-light), not measured")
            else:
                host = bench_scale.prepare_host(demo, url, work, "nginx")
                report("nginx (out of process)", host, args.rounds, args.attribute)


if __name__ == "__main__":
    main()
