"""Root links proven once per process, by content (issue 13, docs/design.md decision 14).

A sync or read of a host whose repository rotated its root many times must not verify
every link again each time, but any root file that differs from the one proven must be
verified (and refused when it does not chain), and a fork must never be stitched together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Root, Targets

from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.tuf import offline, rootproof
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import CacheVerificationError
from tests.unit.simulator import RepositoryFetcher

ROOTS = 12


@pytest.fixture
def link_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every root signature check verify_root_chain makes, by what it checked."""
    rootproof.forget()
    calls: list[str] = []
    real = offline._check_signed

    def counting(delegator: Any, role: str, md: Any, what: str, data: bytes | None = None) -> None:
        if role == "root":
            calls.append(what)
        real(delegator, role, md, what, data)

    monkeypatch.setattr(offline, "_check_signed", counting)
    return calls


@pytest.fixture
def rotated(tmp_path: Path) -> DemoRepository:
    demo = DemoRepository(tmp_path / "repository")
    for _ in range(ROOTS - 1):
        demo.rotate("root")
    return demo


def history_of(demo: DemoRepository, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for version in range(2, ROOTS + 1):
        (into / f"{version}.root.json").write_bytes(demo.repo.root_bytes(version))
    return into


def test_a_chain_is_verified_once_then_only_read_and_hashed(
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str]
) -> None:
    anchor = rotated.repo.root_bytes(1)
    history = history_of(rotated, tmp_path / "history")
    first, chain = offline.verify_root_chain(anchor, history)
    assert first.signed.version == ROOTS and len(link_checks) == 1 + 2 * (ROOTS - 1)
    link_checks.clear()
    again, chain_again = offline.verify_root_chain(anchor, history)
    assert link_checks == []
    assert again.signed.version == ROOTS and chain_again == chain


def test_a_root_file_that_changed_is_verified_again(
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str]
) -> None:
    anchor = rotated.repo.root_bytes(1)
    history = history_of(rotated, tmp_path / "history")
    offline.verify_root_chain(anchor, history)
    victim = history / "7.root.json"
    original = victim.read_bytes()
    stat = victim.stat()

    link_checks.clear()  # same signed content, other bytes: checked (and still valid)
    victim.write_bytes(original + b"\n")
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # content decides, not times
    assert offline.verify_root_chain(anchor, history)[0].signed.version == ROOTS
    assert link_checks[:2] == ["root v7 (by root v6)", "root v7 (by itself)"]

    document = json.loads(original)
    document["signed"]["x-tampered"] = True
    victim.write_bytes(json.dumps(document).encode())
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(
        CacheVerificationError, match=r"root v7 \(by root v6\): signature verification failed"
    ):
        offline.verify_root_chain(anchor, history)


def test_another_anchor_proves_nothing(
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str]
) -> None:
    history = history_of(rotated, tmp_path / "history")
    offline.verify_root_chain(rotated.repo.root_bytes(1), history)
    link_checks.clear()
    (history / "2.root.json").unlink()
    newest, _ = offline.verify_root_chain(rotated.repo.root_bytes(2), history)
    assert newest.signed.version == ROOTS
    assert "trust anchor" in link_checks  # v2 as an anchor is checked as one, not taken on trust


def test_links_of_two_forks_are_never_stitched_together() -> None:
    rootproof.forget()
    anchor, two, three = (rootproof.digest(b) for b in (b"anchor", b"two", b"three"))
    other_two, other_three = rootproof.digest(b"two'"), rootproof.digest(b"three'")
    rootproof.remember(anchor, [(anchor, anchor), (anchor, two), (two, three)])
    rootproof.remember(anchor, [(anchor, other_two), (other_two, other_three)])
    assert rootproof.is_proven(anchor, two, three) and rootproof.is_proven(anchor, other_two, other_three)
    assert not rootproof.is_proven(anchor, two, other_three)
    assert not rootproof.is_proven(rootproof.digest(b"another anchor"), anchor, two)


def test_idle_syncs_start_python_tuf_from_the_newest_proven_root(
    rotated: DemoRepository,
    host: tuple[TrustRepoSettings, Store],
    link_checks: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, store = host
    store.write_anchor(rotated.repo.root_bytes(1))
    fetcher = RepositoryFetcher(rotated.repo)
    assert sync(settings, store, fetcher=fetcher).versions["root"] == ROOTS
    from stella_trust._internal.tuf import updater

    bootstraps: list[int] = []
    real = updater.new_updater

    def recording(*args: Any) -> Any:
        made = real(*args)
        bootstraps.append(made._trusted_set.root.version)  # the root it starts from
        return made

    monkeypatch.setattr(updater, "new_updater", recording)
    link_checks.clear()
    result = sync(settings, store, fetcher=RepositoryFetcher(rotated.repo))
    assert not result.changed and result.versions["root"] == ROOTS
    assert bootstraps == [ROOTS]
    assert link_checks == []  # proven in the first sync of this process


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every threshold check python-tuf's metadata API makes for us, by role."""
    rootproof.forget()
    calls: list[str] = []
    for kind in (Root, Targets):
        real = kind.verify_delegate

        def counting(self: Any, role: str, *args: Any, _real: Any = real) -> Any:
            calls.append(role)
            return _real(self, role, *args)

        monkeypatch.setattr(kind, "verify_delegate", counting)
    return calls


def test_unchanged_role_files_are_not_checked_again_and_changed_ones_are(
    host: tuple[TrustRepoSettings, Store], tmp_path: Path, signature_checks: list[str]
) -> None:
    settings, store = host
    demo = DemoRepository(tmp_path / "repository")
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    generation = store.current()
    assert generation is not None
    offline.verify_generation(generation, demo.repo.root_bytes(1))
    signature_checks.clear()
    again = offline.verify_generation(generation, demo.repo.root_bytes(1))
    assert signature_checks == [] and again.metadata.versions["targets"] >= 1

    targets = generation.metadata_dir / "targets.json"
    document = json.loads(targets.read_bytes())
    document["signed"]["x-tampered"] = True  # other bytes, the same signatures: must be checked
    os.chmod(targets, 0o644)
    targets.unlink()  # a hard link shared with the spare copy: replace, never write through
    targets.write_bytes(json.dumps(document).encode())
    with pytest.raises(CacheVerificationError, match="targets: signature verification failed"):
        offline.verify_generation(generation, demo.repo.root_bytes(1))
    assert "targets" in signature_checks
