"""The `trust` process's entry (console script and `python -m stella_trust`): what must happen
before anything else is imported.

1. The cyclic collector set for a short command. A `trust` run is mostly imports: typer,
   pydantic (and every model class sigstore-python and rekor-types build at import),
   cryptography, python-tuf. They create some 90,000 tracked objects, a third of them cyclic
   garbage from building pydantic's schemas; with CPython's stock thresholds (700 new objects)
   the collector runs ~130 young, ~12 middle and one full collection during them, walking an
   ever-larger heap: ~30 ms of every start-up (docs/design.md, "Collector"). With a young
   threshold of STARTUP_YOUNG_THRESHOLD the collector still runs, a few times, so a command that
   runs long (a publication of 100,000 targets, a release of thousands of artifacts) keeps its
   cyclic garbage bounded: at most that many objects wait for a collection. The long-running
   agent gives the collector back its stock thresholds once started (`settle_for_long_run`).
2. `trust verify`'s worker, forked now (verify_worker.py, design decision 24): it imports sigstore-
   python's verifier while this process imports the CLI and reads the trust.

Only this entry does either: `app.main([...])` called in a process that goes on (tests, an
embedding program) leaves the collector alone and verifies in its own process, as
`open_trust()` and `verify_bundle()` do. Nothing heavy is imported here: what is imported before
the threshold is set is imported under the stock collector, and what is imported before the
fork is imported twice.
"""

import gc
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stella_trust._internal.verify_worker import VerifyWorker

STARTUP_YOUNG_THRESHOLD = 100_000
STOCK_THRESHOLDS = gc.get_threshold()  # as the interpreter set them, before `main` changes them
_STARTED: list["VerifyWorker"] = []  # the worker this entry started, for `trust verify` to take


def main() -> None:
    """Raise the young generation's threshold, start `trust verify`'s worker, run the command."""
    gc.set_threshold(STARTUP_YOUNG_THRESHOLD, *STOCK_THRESHOLDS[1:])
    # pydantic scans every installed distribution's entry points for plugins when it builds its
    # first validator; `trust` uses none (app._main says it again for in-process callers).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    from stella_trust._cli.words import command_words

    args = sys.argv[1:]
    if command_words(args) == "verify" and not {"--help", "-h"} & set(args):
        _start_verify_worker()
    from stella_trust._cli.app import main as run

    try:
        run()
    finally:
        for worker in _STARTED:
            worker.close()


def started_worker() -> "VerifyWorker | None":
    """The worker this entry started for `trust verify`, handed over once (None: none started,
    or the command runs in-process through `app.main([...])`)."""
    return _STARTED.pop() if _STARTED else None


def settle_for_long_run() -> None:
    """The stock thresholds again, for a process that runs for days (the agent): its start-up
    is over, and from now on garbage is collected as CPython collects it."""
    gc.set_threshold(*STOCK_THRESHOLDS)


def _start_verify_worker() -> None:
    """The worker, if it can start; it only saves time, so whatever stops it (a module that does
    not import, the system refusing a pipe or a fork) leaves the run to one process, where a real
    fault meets the command's own one-line handling instead of a traceback from here."""
    try:
        from stella_trust._internal.verify_worker import start_worker

        worker = start_worker()
    except Exception:
        return
    if worker is not None:
        _STARTED.append(worker)
