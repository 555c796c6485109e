"""`trust agent` on a host with several instances (decision 23): one refresh loop per instance,
each on its own schedule, jitter and backoff, so one instance's outage never delays or
touches another's trust. The main thread owns the signals and hands each to every loop
(SIGTERM stops all, SIGHUP reloads all, SIGUSR1 refreshes all)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from stella_trust._agent.loop import TICK_SECONDS, Agent
from stella_trust.errors import EXIT_OK


def run_all(agents: list[Agent]) -> int:
    """Run every agent's loop in its own thread until all have stopped (a signal stops all)."""

    def forward(signum: int, frame: FrameType | None) -> None:
        """Set each loop's flag (a handler takes no lock; each loop turns flags into events)."""
        for agent in agents:
            if signum in (signal.SIGTERM, signal.SIGINT):
                agent._on_stop(signum, frame)
            elif signum == signal.SIGHUP:
                agent._on_reload(signum, frame)
            else:
                agent._on_refresh(signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, forward)
    threads = [threading.Thread(target=agent.run, daemon=True) for agent in agents]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(TICK_SECONDS)
    return EXIT_OK


class _Named(logging.Filter):
    """Each line of one instance's loop says which instance it is about, and counts as the
    agent's own line (logs.RepeatFilter deduplicates only libraries' lines)."""

    def __init__(self, owner: str, instance: str) -> None:
        super().__init__()
        self.owner, self.prefix = owner, f"instance {instance}: "

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True: the record is named, never dropped."""
        if isinstance(record.msg, str) and not record.msg.startswith(self.prefix):
            record.msg = self.prefix + record.msg  # instance names hold no '%' (INSTANCE_NAME)
        record.name = self.owner
        return True


def instance_logger(base: logging.Logger, instance: str) -> logging.Logger:
    """The agent's logger for one instance's loop: its lines go to the agent's handlers."""
    child = base.getChild(f"instance.{instance}")
    if not any(isinstance(f, _Named) for f in child.filters):
        child.addFilter(_Named(base.name, instance))
    return child
