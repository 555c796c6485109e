"""An operator's whole year (issue 26): the README's procedures, Fleet's handbook and
Foundries' offline keys for 372 simulated days, a 6-hourly timer exactly as its systemd unit
runs it, a client syncing after every step; tests/e2e/operator_year.py is the script and
checks the invariants after every step (tests/e2e/test_operator_year.py runs it bounded).

    .venv/bin/python benchmarks/bench_operator_year.py [--profile year|bounded]
        [--tuf-js /path/to/check.js]   # an independent client after every step too
        [--json out.json]

Prints the figures the README quotes: wall time, simulated days, timer runs and commands,
the median time of each command (in process, under libfaketime), every client refusal and
how long it lasted, and the hints that were followed literally. Figures, not assertions:
the run itself fails (exit 1) at the first broken invariant.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.operator_year import run_year


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="year", choices=("year", "bounded"))
    parser.add_argument("--tuf-js", help="a node script: URL ROOT STATE_DIR -> exit 0 when it accepts")
    parser.add_argument("--json", type=Path, help="write the whole report here")
    args = parser.parse_args()
    hook = f"node {args.tuf_js}" if args.tuf_js else None
    with tempfile.TemporaryDirectory(prefix="stella-trust-year-") as tmp:
        report = run_year(Path(tmp), args.profile, hook=hook, timeout=6 * 3600)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f"profile {report['profile']}: {'green' if report['ok'] else 'RED: ' + str(report['error'])}")
    print(
        f"simulated {report['simulated_days']:.0f} days in {report['wall_seconds']:.0f} s wall: "
        f"{report['timer_runs']} timer runs, {report['commands']} operator commands "
        f"({len(report['refused_commands'])} refused as they should be, each followed to green)"
    )
    print("events: " + "; ".join(e.split(" ", 2)[2] + " " + e.split(" ")[0] for e in report["events"]))
    print(f"highest served versions: {report['max_served']}")
    clients = (("client", report["client_refusals"]), ("tuf-js", report["independent_client_refusals"]))
    for name, refusals in clients:
        if not refusals:
            print(f"{name}: never refused")
        for r in refusals:
            print(f"{name} refused {r['hours']:.1f} h from {r['from']} after {r['after']}: {r['error'][:90]}")
    print(f"monitor red (then acted on): {report['checks_red']}")
    print(f"hints followed literally: {len(report['hints_followed'])}")
    # (in process, on libfaketime's clock: only commands run often enough for a median)
    for command, seconds in report["median_seconds"].items():
        if report["count"][command] >= 3:
            print(f"  {command:<22} median {seconds * 1000:7.1f} ms  x{report['count'][command]}")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
