"""An in-memory TUF repository served through python-tuf's FetcherInterface.

Like python-tuf's own `tests/repository_simulator.py`: the client under test runs its
real code (our RepositorySession, python-tuf's Updater, the offline verifier, the store)
while the "network" is a dictionary built from a `Repository`'s signed metadata and target
bytes in memory, with every request recorded. No sockets, no subprocesses, no sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib import parse

from tuf.api import exceptions as tuf_exceptions
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.net.fetcher import CountingFetcher
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.repository import Repository

BASE_URL = "http://simulated.invalid"


class RepositoryFetcher(CountingFetcher):
    """Serves `repo`'s current in-memory state at BASE_URL (what `write()` would publish)."""

    def __init__(self, repo: Repository) -> None:
        super().__init__()
        self.repo = repo
        self.overrides: dict[str, bytes | int] = {}  # path -> bytes to serve, or an HTTP status

    def files(self) -> dict[str, bytes]:
        repo, serializer = self.repo, JSONSerializer(compact=False)
        consistent = repo.consistent_snapshot
        files = {f"metadata/{v}.root.json": data for v, data in enumerate(repo.root_history, start=1)}
        files["metadata/timestamp.json"] = repo.timestamp.to_bytes(serializer)
        roles = [("snapshot", repo.snapshot), ("targets", repo.targets), *repo.delegated.items()]
        for name, md in roles:
            encoded = parse.quote(name, safe="")
            prefix = f"{md.signed.version}." if consistent else ""
            files[f"metadata/{prefix}{encoded}.json"] = md.to_bytes(serializer)
        for md in [repo.targets, *repo.delegated.values()]:
            for name, info in md.signed.targets.items():
                data = repo.target_data.get(name)
                if data is not None:
                    for path in info.get_prefixed_paths() if consistent else [name]:
                        files[f"targets/{path}"] = data
        return files

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests += 1
        self.urls.append(url)
        path = url.removeprefix(BASE_URL + "/")
        served = self.overrides.get(path)
        if isinstance(served, int):
            raise tuf_exceptions.DownloadHTTPError(f"HTTP {served} for {url}", served)
        data = served if served is not None else self.files().get(path)
        if data is None:
            raise tuf_exceptions.DownloadHTTPError(f"HTTP 404 for {url}", 404)
        self.bytes_received += len(data)
        return iter([data])

    def paths(self) -> list[str]:
        """The request paths so far, relative to the base URL (then forgotten)."""
        taken = [url.removeprefix(BASE_URL) for url in self.urls]
        self.urls = []
        return taken


Host = tuple[TrustRepoSettings, Store]
Simulated = tuple[DemoRepository, "RepositoryFetcher"]


def synced(host: Host, demo: DemoRepository) -> None:
    """`init` + first sync of `host` from the simulated repository."""
    settings, store = host
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
