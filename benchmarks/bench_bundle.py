"""Bundle export/import throughput and import memory. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_bundle.py [--mb 200] [--small-mb 50]

Export and import of a bundle holding about `--mb` MB of targets, in MB/s (medians of
`--rounds` runs, each interleaved with the floor), against the
floor of doing the same bytes with single-threaded `zstd -T1` and `sha256sum` (issue 13) (ratio: floor
time / our time, 1.0 = as fast as the floor). Import runs in a child process so its
peak RSS can be read; it is measured for two bundle sizes to show memory does not grow
with the bundle (streaming, no whole-file loads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stella_trust._internal.bundle.export import export_archive
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository

IMPORT_CHILD = """
import json, sys, time
from pathlib import Path
from stella_trust._internal.bundle.importer import import_bundle
from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
settings = load_settings(Path(sys.argv[1]))
store = Store.of(settings)
started = time.perf_counter()
summary = import_bundle(settings, store, Path(sys.argv[2]))
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's size at fork.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "bytes": summary.bytes, "maxrss_kib": hwm}))
"""


def payload(path: Path, megabytes: int) -> None:
    """Half random, half repetitive: neither best nor worst case for zstd."""
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1 << 19) + bytes(1 << 19))


def write_config(path: Path, url: str, cache: Path) -> None:
    path.write_text(
        "attestor:\n  trust_repo:\n"
        f"    tuf_url: {url}\n    local_cache_path: {cache}\n"
        "    pinned_targets: [rekor-key-v1, rekor-key-v2, payload.bin]\n"
    )


def scenario(work: Path, megabytes: int, rounds: int) -> dict[str, float]:
    demo = DemoRepository(work / "repo")
    blob = work / "payload.bin"
    payload(blob, megabytes)
    demo.repo.add_target("payload.bin", blob.read_bytes())
    demo.repo.publish()
    connected_cfg, airgap_cfg = work / "connected.yaml", work / "airgap.yaml"
    write_config(connected_cfg, demo.repo.path.as_uri(), work / "cache-connected")
    write_config(airgap_cfg, demo.repo.path.as_uri(), work / "cache-airgap")
    connected = load_settings(connected_cfg)
    store = Store(connected.local_cache_path)
    store.write_anchor(demo.root_path.read_bytes())
    sync(connected, store)

    bundle = work / "bundle.tar.zst"
    exports, imports, floor_exports, floor_imports, rss = [], [], [], [], []
    for attempt in range(rounds):  # interleaved with the floor: drift hits both alike
        started = time.perf_counter()
        summary = export_archive(connected, store, bundle)
        exports.append(time.perf_counter() - started)
        floor_exports.append(
            _timed(f"zstd -q -3 -T1 -c {blob} > {work}/floor.zst && sha256sum {blob} >/dev/null")
        )
        cache = work / f"cache-airgap-{attempt}"
        write_config(airgap_cfg, demo.repo.path.as_uri(), cache)
        Store(cache).write_anchor(demo.root_path.read_bytes())
        child = subprocess.run(
            [sys.executable, "-c", IMPORT_CHILD, str(airgap_cfg), str(bundle)],
            capture_output=True,
            text=True,
            check=True,
        )
        imported = json.loads(child.stdout)
        imports.append(imported["seconds"])
        rss.append(imported["maxrss_kib"] / 1024)
        out = work / "floor.out"
        floor_imports.append(
            _timed(f"zstd -q -d -T1 -c {work}/floor.zst > {out} && sha256sum {out} >/dev/null")
        )
    return {
        "bytes": summary.bytes,
        "compressed": bundle.stat().st_size,
        "export_s": statistics.median(exports),
        "import_s": statistics.median(imports),
        "import_rss_mib": max(rss),
        "floor_export_s": statistics.median(floor_exports),
        "floor_import_s": statistics.median(floor_imports),
    }


def _timed(command: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--small-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many runs of each")
    args = parser.parse_args()
    if not shutil.which("zstd") or not shutil.which("sha256sum"):
        sys.exit("needs the zstd and sha256sum commands for the floor (apt-get install zstd)")
    results = {}
    for megabytes in (args.small_mb, args.mb):
        with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
            results[megabytes] = scenario(Path(tmp), megabytes, args.rounds)
    for r in results.values():
        mb = r["bytes"] / 1e6
        print(f"bundle of {mb:.0f} MB of targets ({r['compressed'] / 1e6:.0f} MB compressed):")
        print(
            f"  export {mb / r['export_s']:.0f} MB/s; zstd+sha256sum floor "
            f"{mb / r['floor_export_s']:.0f} MB/s; ratio {r['floor_export_s'] / r['export_s']:.2f}"
        )
        print(
            f"  import {mb / r['import_s']:.0f} MB/s; zstd -d+sha256sum floor "
            f"{mb / r['floor_import_s']:.0f} MB/s; ratio {r['floor_import_s'] / r['import_s']:.2f}"
        )
        print(f"  import peak RSS {r['import_rss_mib']:.0f} MiB")
    small, large = results[args.small_mb], results[args.mb]
    print(
        f"import peak RSS growth from {args.small_mb} MB to {args.mb} MB bundle: "
        f"{large['import_rss_mib'] - small['import_rss_mib']:+.1f} MiB"
    )


if __name__ == "__main__":
    main()
