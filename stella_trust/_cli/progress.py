"""Progress for long transfers: a rich bar on a terminal, silence for scripts and logs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LARGE = 64 << 20  # below this a transfer is over before a bar is worth drawing


@contextmanager
def transfer_progress(total: int) -> Iterator[Callable[[int], None] | None]:
    """Yield an `advance(bytes)` callback, or None when no bar should be shown."""
    if total < LARGE or not sys.stdout.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("transfer", total=total)
        yield lambda n: bar.advance(task, n)
