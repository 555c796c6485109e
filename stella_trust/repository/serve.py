"""A static file server on 127.0.0.1 for the demo and the tests.

A TUF repository is static files, so any web server works (nginx, S3); this one
exists so `trust demo` and the tests need nothing installed. It records each
request path, which is how the tests prove an idle sync costs exactly two requests.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class RecordingHandler(SimpleHTTPRequestHandler):
    """Serves a directory and records each request path (tests assert what a client fetched)."""

    server: RepositoryServer

    def do_GET(self) -> None:
        """Record the path, then serve it as SimpleHTTPRequestHandler does."""
        with self.server.lock:
            self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the demo prints what the client sees, not the server's access log."""


class RepositoryServer(ThreadingHTTPServer):
    """A static HTTP server for a repository directory on 127.0.0.1 (tests, the demo):
    real sockets, so the client's real fetcher is what is tested."""

    daemon_threads = True

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[RecordingHandler] = RecordingHandler,
    ) -> None:
        self.directory = Path(directory)
        self.requests: list[str] = []
        self.lock = threading.Lock()
        super().__init__((host, port), functools.partial(handler, directory=str(directory)))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients are given."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RepositoryServer:
        """Serve in a daemon thread; returns self for `with`."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def take_requests(self) -> list[str]:
        """The paths requested since the last call (and forget them)."""
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def __enter__(self) -> RepositoryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
