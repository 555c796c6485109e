"""No cyclic garbage collection while a sync runs (decision 14 has the measurement)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a sync runs (reference counting still frees
    everything as usual).

    Parsing a large targets role creates about ten objects per target, almost none of them
    in reference cycles, and CPython's collector scans every tracked object again at each
    full collection: with a large repository, a good share of python-tuf's own refresh was
    the collector (docs/design.md, decision 14, has the measurement). `sync` runs only in
    processes stella-trust owns (the CLI and the agent), for seconds at most, so the pause
    cannot starve an application's collector; the few cycles a sync leaves (exception
    tracebacks) are collected as soon as the collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
