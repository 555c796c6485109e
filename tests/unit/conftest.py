"""In-process fixtures: a demo repository in memory, a host's settings and store."""

from __future__ import annotations

from pathlib import Path

import pytest

from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Store
from stella_trust.demo.repository import DemoRepository
from tests.unit.simulator import BASE_URL, RepositoryFetcher


@pytest.fixture
def host(tmp_path: Path) -> tuple[TrustRepoSettings, Store]:
    """Settings for a host of the simulated repository (no config file) and its empty store."""
    settings = load_settings(
        tmp_path / "absent.yaml",
        {"tuf_url": BASE_URL, "local_cache_path": tmp_path / "cache", "pinned_targets": ["rekor-key-v2"]},
    )
    return settings, Store.of(settings)


@pytest.fixture
def simulated(tmp_path: Path) -> tuple[DemoRepository, RepositoryFetcher]:
    demo = DemoRepository(tmp_path / "repository")
    return demo, RepositoryFetcher(demo.repo)
