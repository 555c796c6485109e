"""The fetcher's progress reports, in process: a download without a Content-Length, and one
abandoned half-way, still end their progress line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stella_trust._internal.net.fetcher import HttpxFetcher
from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer


def test_fetcher_without_content_length_and_an_abandoned_download(tmp_path: Path) -> None:
    """No Content-Length: the total is unknown (None); a download python-tuf stops early
    (a length limit) still ends its bar."""
    events: list[Any] = []

    class Record:
        def __init__(self, label: str, total: int | None) -> None:
            events.append(("start", label, total))

        def advance(self, count: int) -> None:
            events.append(("advance", count))

        def done(self) -> None:
            events.append(("done",))

    demo = DemoRepository(tmp_path / "repository")
    with FaultyServer(demo.repo.path) as server, HttpxFetcher(progress=Record) as fetcher:
        server.inject("/endless.bin", "endless")
        chunks = fetcher.fetch(f"{server.url}/targets/endless.bin")
        received = 0
        for chunk in chunks:
            received += len(chunk)
            if received > 1 << 20:
                break
        chunks.close()
    assert events[0] == ("start", "endless.bin", None)
    assert events[-1] == ("done",)
    assert sum(e[1] for e in events if e[0] == "advance") == received
