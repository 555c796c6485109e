"""Progress for long transfers and hashes: rich bars on stderr, for a person at a terminal.

A bar is drawn only when stderr is a terminal rich can animate (a tty, not TERM=dumb), the
command was not given `--quiet` or `--json`, and the transfer is at least `THRESHOLD` bytes
(one of unknown size once it has passed that). Each bar is labelled with what it moves
(`sync rekor.pub`, `import trust.tar.zst (metadata)`) and totals the bytes it will really
count. Bars are transient: they vanish when the command ends, before its output is printed.
stdout is never written to, so `--json` and pipes see only the command's own output.

Commands take `bundle_progress` (the hook the bundle modules report their stages to) or
`sync_progress` (a fetcher whose downloads report progress); both build on `meter`. rich
is imported only when a bar may be drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from stella_trust._cli.options import QuietOption as QuietOption  # declared with the other options

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from stella_trust._internal.net.fetcher import CountingFetcher
    from stella_trust._internal.settings import TrustRepoSettings

THRESHOLD = 1 << 20  # below ~1 MB a transfer is over before a bar is worth drawing


def _printable(text: str, limit: int = 60) -> str:
    """A label from a file or target name, safe to draw (no control characters)."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else f"{clean[: limit - 1]}…"


class Bar:
    """One labelled bar. A bar of unknown size appears once it passes THRESHOLD bytes."""

    def __init__(self, meter: Meter, label: str, total: int | None) -> None:
        """A bar of known size appears at once; one of unknown size waits until it passes
        `THRESHOLD`."""
        self.meter = meter
        self.label = label
        self.total = total
        self.completed = 0
        self.task: TaskID | None = None
        if total is not None:
            self.task = meter.add(label, total, 0)

    def advance(self, count: int) -> None:
        """Count `count` bytes; a bar of unknown size appears once it has passed `THRESHOLD`,
        starting at the bytes already counted."""
        self.completed += count
        if self.task is not None:
            self.meter.bar().advance(self.task, count)
        elif self.completed >= THRESHOLD:
            self.task = self.meter.add(self.label, None, self.completed)

    def done(self) -> None:
        """The transfer ended (complete or not): a bar of unknown size gets its total."""
        if self.task is not None and self.total is None:
            self.meter.bar().update(self.task, total=self.completed)


class Meter:
    """The bars of one command on stderr, started with the first bar worth drawing."""

    def __init__(self, console: Console) -> None:
        """Nothing is drawn until the first bar worth drawing (`bar`)."""
        self.console = console
        self._progress: Progress | None = None

    def bar(self) -> Progress:
        """rich's Progress on stderr, started on first use: transient (gone before the command
        prints) and never redirecting stdout, which belongs to the command and `--json`."""
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                redirect_stdout=False,  # stdout is the command's own (and --json's)
            )
            self._progress.start()
        return self._progress

    def add(self, label: str, total: int | None, completed: int) -> TaskID:
        """A new task on the progress display."""
        return self.bar().add_task(label, total=total, completed=completed)

    def transfer(self, label: str, total: int | None) -> Bar | None:
        """A bar for `total` bytes (None: unknown), or None when it is too small to show."""
        if total is not None and total < THRESHOLD:
            return None
        return Bar(self, _printable(label), total)

    def close(self) -> None:
        """Stop drawing; transient bars vanish before the command's own output."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def wanted(quiet: bool) -> bool:
    """Whether bars may be drawn at all: stderr is a terminal and nobody said --quiet."""
    try:
        return not quiet and sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


@contextmanager
def meter(quiet: bool) -> Iterator[Meter | None]:
    """A Meter on stderr, or None when no bar may be drawn."""
    if not wanted(quiet):
        yield None
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_interactive:  # TERM=dumb, TTY_INTERACTIVE=0: no animation
        yield None
        return
    bars = Meter(console)
    try:
        yield bars
    finally:
        bars.close()


def _debug_stages(label: str) -> Callable[[str, int | None], Bar | None]:
    """`--debug` / STELLA_DEBUG=1 without a bar: one stderr line as each stage begins, so a
    slow import or export says where it is (`debug: import trust.tar.zst (targets): 50331648
    bytes`) in a log or a CI job, where no terminal draws bars. Nothing is counted."""

    def hook(stage: str, total: int | None) -> None:
        """One `debug:` line per stage; returns no bar, so nothing is counted."""
        size = "size unknown" if total is None else f"{total} bytes"
        typer.echo(f"debug: {_printable(label)} ({_printable(stage)}): {size}", err=True)

    return hook


@contextmanager
def bundle_progress(label: str, quiet: bool) -> Iterator[Callable[[str, int | None], Bar | None] | None]:
    """The `progress=` hook for export and import: each stage a bundle module reports
    ("metadata", "targets", "hash NAME", "write") gets a bar `LABEL (STAGE)`. Without a
    bar, `--debug` prints a line per stage instead; else None."""
    with meter(quiet) as bars:
        if bars is None:
            from stella_trust._cli.envelope import debugging

            yield _debug_stages(label) if debugging() else None
            return

        def hook(stage: str, total: int | None) -> Bar | None:
            """A bar for one stage, labelled `LABEL (STAGE)`."""
            return bars.transfer(f"{label} ({stage})" if stage else label, total)

        yield hook


@contextmanager
def sync_progress(settings: TrustRepoSettings, quiet: bool) -> Iterator[CountingFetcher | None]:
    """For `sync` and `init`: a fetcher exactly like the one sync builds (same timeouts,
    deadline, CA bundle), whose downloads draw `sync NAME` bars; None when no bar may be
    drawn (sync then builds its own)."""
    with meter(quiet) as bars:
        if bars is None:
            yield None
            return
        from stella_trust._internal.tuf.updater import make_fetcher

        fetcher = make_fetcher(settings)

        def hook(name: str, total: int | None) -> Bar | None:
            """A bar for one download, labelled `sync NAME`."""
            return bars.transfer(f"sync {name}", total)

        fetcher.progress = hook
        try:
            yield fetcher
        finally:
            fetcher.close()
