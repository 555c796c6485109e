"""systemd's sd_notify protocol, spoken directly on the NOTIFY_SOCKET datagram socket.

No compiled dependency: the protocol is newline-separated `KEY=VALUE` in one datagram to
the AF_UNIX socket named by `$NOTIFY_SOCKET` (a leading '@' means the abstract
namespace). Without the variable every call is a no-op, so the agent runs the same in a
terminal, under cron, or under systemd.

Every send is non-blocking. An AF_UNIX datagram `sendto` blocks while the receiver's
queue is full (`net.unix.max_dgram_qlen`, 10 by default), so a PID 1 that is busy,
restarting or stuck would otherwise freeze the agent's main loop: no refresh, no
watchdog, SIGTERM ignored. A message that cannot be delivered at once is dropped and
counted (`dropped`, exported as `stella_trust_notify_dropped_total`): a late
`WATCHDOG=1` is worth nothing, and the next `STATUS=` supersedes the lost one.
"""

from __future__ import annotations

import logging
import os
import socket


class Notifier:
    """Sends sd_notify messages; never blocks, never raises, counts what it dropped."""

    def __init__(self, environ: dict[str, str] | None = None, logger: logging.Logger | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000
        self.log = logger or logging.getLogger("stella_trust")
        self.dropped = 0  # messages systemd never got (queue full, socket gone, ...)
        self._reported: set[str] = set()  # drop reasons already logged at warning level

    @property
    def enabled(self) -> bool:
        """Whether systemd asked for notifications ($NOTIFY_SOCKET set)."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram, or nothing: True if it was queued, False if it was dropped.

        MSG_DONTWAIT on a non-blocking socket: a full queue (EAGAIN), a kernel short of
        buffers (ENOBUFS), systemd gone at shutdown (ECONNREFUSED, ENOENT) or any other
        socket error drops the message instead of stalling or killing the agent.
        """
        if self.address is None:
            return True
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            self._dropped(exc)
            return False
        return True

    def _dropped(self, exc: OSError) -> None:
        """Count the drop; say so once per distinct reason (a stuck PID 1 would otherwise
        add a warning per watchdog ping), the rest at debug level."""
        self.dropped += 1
        reason = exc.strerror or type(exc).__name__
        if reason in self._reported:
            self.log.debug("sd_notify message dropped (%d so far): %s", self.dropped, reason)
            return
        self._reported.add(reason)
        self.log.warning(
            "sd_notify message dropped: %s (systemd is not reading $NOTIFY_SOCKET; "
            "the agent carries on and counts drops in stella_trust_notify_dropped_total)",
            reason,
        )

    def ready(self, status: str) -> None:
        """READY=1 with the status: under Type=notify, `systemctl start` returns once the first
        cycle has judged the trust (sent again after a reload)."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        """The one-line status `systemctl status` shows."""
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """WATCHDOG=1: the main thread is alive (systemd restarts the agent if this stops)."""
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """RELOADING=1, sent on SIGHUP before the config is read again."""
        self.send("RELOADING=1")

    def stopping(self) -> None:
        """STOPPING=1, so systemd knows the exit that follows is asked for."""
        self.send("STOPPING=1")
