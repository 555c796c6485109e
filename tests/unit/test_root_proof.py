"""Root links proven once per memo (one process), by content (docs/design.md decision 14).

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

from stella_trust._internal import _compat_tuf
from stella_trust._internal import sync as sync_module
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust._internal.tuf import offline, proofs, rootchain, updater
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import CacheVerificationError
from tests.unit.simulator import RepositoryFetcher

ROOTS = 12


@pytest.fixture
def memo() -> VerificationMemo:
    """One process's memory (the agent's, an attestor's): shared by the calls of a test."""
    return VerificationMemo()


@pytest.fixture
def link_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every root signature check verify_root_chain makes, by what it checked."""
    calls: list[str] = []
    real = rootchain.check_signed

    def counting(memo: Any, delegator: Any, role: str, md: Any, what: str, *rest: Any) -> None:
        if role == "root":
            calls.append(what)
        real(memo, delegator, role, md, what, *rest)

    monkeypatch.setattr(rootchain, "check_signed", counting)
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
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str], memo: VerificationMemo
) -> None:
    anchor = rotated.repo.root_bytes(1)
    history = history_of(rotated, tmp_path / "history")
    first, chain = offline.verify_root_chain(anchor, history, memo=memo)
    assert first.signed.version == ROOTS and len(link_checks) == 1 + 2 * (ROOTS - 1)
    link_checks.clear()
    again, chain_again = offline.verify_root_chain(anchor, history, memo=memo)
    assert link_checks == []
    assert again.signed.version == ROOTS and chain_again == chain


def test_a_root_file_that_changed_is_verified_again(
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str], memo: VerificationMemo
) -> None:
    anchor = rotated.repo.root_bytes(1)
    history = history_of(rotated, tmp_path / "history")
    offline.verify_root_chain(anchor, history, memo=memo)
    victim = history / "7.root.json"
    original = victim.read_bytes()
    stat = victim.stat()

    link_checks.clear()  # same signed content, other bytes: checked (and still valid)
    victim.write_bytes(original + b"\n")
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # content decides, not times
    assert offline.verify_root_chain(anchor, history, memo=memo)[0].signed.version == ROOTS
    assert link_checks[:2] == ["root v7 (by root v6)", "root v7 (by itself)"]

    document = json.loads(original)
    document["signed"]["x-tampered"] = True
    victim.write_bytes(json.dumps(document).encode())
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(
        CacheVerificationError, match=r"root v7 \(by root v6\): signature verification failed"
    ):
        offline.verify_root_chain(anchor, history, memo=memo)


def test_another_anchor_proves_nothing(
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str], memo: VerificationMemo
) -> None:
    history = history_of(rotated, tmp_path / "history")
    offline.verify_root_chain(rotated.repo.root_bytes(1), history, memo=memo)
    link_checks.clear()
    (history / "2.root.json").unlink()
    newest, _ = offline.verify_root_chain(rotated.repo.root_bytes(2), history, memo=memo)
    assert newest.signed.version == ROOTS
    assert "trust anchor" in link_checks  # v2 as an anchor is checked as one, not taken on trust


def test_links_of_two_forks_are_never_stitched_together(memo: VerificationMemo) -> None:
    anchor, two, three = (proofs.digest(b) for b in (b"anchor", b"two", b"three"))
    other_two, other_three = proofs.digest(b"two'"), proofs.digest(b"three'")
    for link in [
        (anchor, anchor),
        (anchor, two),
        (two, three),
        (anchor, other_two),
        (other_two, other_three),
    ]:
        memo.root_links.put((anchor, *link), True)
    assert (anchor, two, three) in memo.root_links and (anchor, other_two, other_three) in memo.root_links
    assert (anchor, two, other_three) not in memo.root_links
    assert (proofs.digest(b"another anchor"), anchor, two) not in memo.root_links


def test_idle_syncs_start_python_tuf_from_the_newest_proven_root(
    rotated: DemoRepository,
    host: tuple[TrustRepoSettings, Store],
    link_checks: list[str],
    monkeypatch: pytest.MonkeyPatch,
    memo: VerificationMemo,
) -> None:
    settings, store = host
    store.write_anchor(rotated.repo.root_bytes(1))
    fetcher = RepositoryFetcher(rotated.repo)
    assert sync(settings, store, fetcher=fetcher, memo=memo).versions["root"] == ROOTS

    bootstraps: list[int] = []
    real = updater.new_updater

    def recording(*args: Any) -> Any:
        made = real(*args)
        bootstraps.append(made._trusted_set.root.version)  # the root it starts from
        return made

    monkeypatch.setattr(updater, "new_updater", recording)
    link_checks.clear()
    result = sync(settings, store, fetcher=RepositoryFetcher(rotated.repo), memo=memo)
    assert not result.changed and result.versions["root"] == ROOTS
    assert bootstraps == [ROOTS]
    assert link_checks == []  # proven in the first sync of this process


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every threshold check python-tuf's metadata API makes for us, by role."""
    calls: list[str] = []
    for kind in (Root, Targets):
        real = kind.verify_delegate

        def counting(self: Any, role: str, *args: Any, _real: Any = real) -> Any:
            calls.append(role)
            return _real(self, role, *args)

        monkeypatch.setattr(kind, "verify_delegate", counting)
    return calls


def test_unchanged_role_files_are_not_checked_again_and_changed_ones_are(
    host: tuple[TrustRepoSettings, Store], tmp_path: Path, signature_checks: list[str], memo: VerificationMemo
) -> None:
    settings, store = host
    demo = DemoRepository(tmp_path / "repository")
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    generation = store.current()
    assert generation is not None
    offline.verify_generation(generation, demo.repo.root_bytes(1), memo=memo)
    signature_checks.clear()
    again = offline.verify_generation(generation, demo.repo.root_bytes(1), memo=memo)
    assert signature_checks == [] and again.metadata.versions["targets"] >= 1

    targets = generation.metadata_dir / "targets.json"
    document = json.loads(targets.read_bytes())
    document["signed"]["x-tampered"] = True  # other bytes, the same signatures: must be checked
    os.chmod(targets, 0o644)
    targets.unlink()  # a hard link shared with the spare copy: replace, never write through
    targets.write_bytes(json.dumps(document).encode())
    with pytest.raises(CacheVerificationError, match="targets: signature verification failed"):
        offline.verify_generation(generation, demo.repo.root_bytes(1), memo=memo)
    assert "targets" in signature_checks


# ---- python-tuf's own checks, recognised by content (decision 14, UpdaterChecks) ----------------


def test_a_cold_sync_checks_each_top_level_signature_once_not_twice(
    host: tuple[TrustRepoSettings, Store],
    tmp_path: Path,
    signature_checks: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, store = host
    demo = DemoRepository(tmp_path / "repository")
    store.write_anchor(demo.repo.root_bytes(1))
    result = sync(settings, store, fetcher=RepositoryFetcher(demo.repo))
    assert result.changed
    # python-tuf's refresh checked each top-level role once; the check before the commit met
    # the same bytes under the same root and did not repeat it.
    assert [signature_checks.count(role) for role in ("timestamp", "snapshot", "targets")] == [1, 1, 1]

    # Without the record the same sync checks every role twice: the record is what saved it.
    signature_checks.clear()
    monkeypatch.setattr(updater.RepositorySession, "updater_checks", lambda self: None)
    settings2 = settings.model_copy(update={"local_cache_path": tmp_path / "cache2"})
    store2 = Store.of(settings2)
    store2.write_anchor(demo.repo.root_bytes(1))
    sync(settings2, store2, fetcher=RepositoryFetcher(demo.repo))
    assert [signature_checks.count(role) for role in ("timestamp", "snapshot", "targets")] == [2, 2, 2]


def test_bytes_changed_after_python_tuf_verified_them_are_checked_and_refused(
    host: tuple[TrustRepoSettings, Store],
    simulated: tuple[DemoRepository, RepositoryFetcher],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A working copy edited between python-tuf's refresh and the commit: the record names
    the bytes python-tuf verified, so the edited file is checked in full and refused, and the
    trust held before is untouched."""
    settings, store = host
    demo, fetcher = simulated
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=fetcher)
    before = store.current()
    assert before is not None
    demo.repo.resign_timestamp()  # the next sync changes something, so it verifies before committing
    real = sync_module.verify_generation

    def edited_first(work: Any, *args: Any, **kwargs: Any) -> Any:
        targets = work.metadata_dir / "targets.json"
        document = json.loads(targets.read_bytes())
        document["signed"]["x-tampered"] = True  # the same signatures over other content
        targets.unlink()
        targets.write_bytes(json.dumps(document).encode())
        return real(work, *args, **kwargs)

    monkeypatch.setattr(sync_module, "verify_generation", edited_first)
    with pytest.raises(Exception, match="targets: signature verification failed"):
        sync(settings, store, fetcher=fetcher)
    monkeypatch.undo()
    held = store.current()
    assert held is not None and held.path == before.path
    assert offline.verify_generation(before, demo.repo.root_bytes(1)).metadata.versions["targets"] >= 1


def test_a_record_under_another_root_excuses_nothing(
    host: tuple[TrustRepoSettings, Store], simulated: tuple[DemoRepository, RepositoryFetcher]
) -> None:
    settings, store = host
    demo, fetcher = simulated
    anchor = demo.repo.root_bytes(1)
    store.write_anchor(anchor)
    sync(settings, store, fetcher=fetcher)
    generation = store.current()
    assert generation is not None
    targets = generation.metadata_dir / "targets.json"
    document = json.loads(targets.read_bytes())
    document["signed"]["x-tampered"] = True
    targets.unlink()
    targets.write_bytes(json.dumps(document).encode())
    forged = proofs.digest(targets.read_bytes())
    other_root = _compat_tuf.UpdaterChecks(proofs.digest(b"another root"), frozenset({("targets", forged)}))
    with pytest.raises(CacheVerificationError, match="targets: signature verification failed"):
        offline.verify_metadata(generation.metadata_dir, anchor, None, other_root)
    other_role = _compat_tuf.UpdaterChecks(proofs.digest(anchor), frozenset({("snapshot", forged)}))
    with pytest.raises(CacheVerificationError, match="targets: signature verification failed"):
        offline.verify_metadata(generation.metadata_dir, anchor, None, other_role)
    # What a record means: python-tuf verified exactly these bytes as targets under this root.
    same = _compat_tuf.UpdaterChecks(proofs.digest(anchor), frozenset({("targets", forged)}))
    assert offline.verify_metadata(generation.metadata_dir, anchor, None, same).targets.signed.version >= 1


def test_the_record_names_the_root_python_tuf_ended_its_walk_with_or_nothing() -> None:
    url = "https://tuf.example/metadata/"
    d = proofs.digest
    bootstrap = json.dumps({"signed": {"version": 1}}).encode()
    delivered = [
        (url + "2.root.json", d(b"root 2")),
        (url + "3.root.json", d(b"root 3")),
        (url + "timestamp.json", d(b"ts")),
        (url + "7.snapshot.json", d(b"snap")),
        (url + "targets.json", d(b"targets")),  # a repository without consistent snapshots
    ]
    asked = [url + "2.root.json", url + "3.root.json", url + "4.root.json"]  # 4: the 404
    checks = _compat_tuf.updater_checks(bootstrap, url, [*asked, url + "timestamp.json"], delivered)
    assert checks is not None and checks.root_digest == d(b"root 3")
    assert checks.files == {("timestamp", d(b"ts")), ("snapshot", d(b"snap")), ("targets", d(b"targets"))}
    only_404 = _compat_tuf.updater_checks(bootstrap, url, [url + "2.root.json"], delivered[2:])
    assert only_404 is not None and only_404.root_digest == d(bootstrap)
    # The walk's last root delivered (max_root_rotations reached): that root, too.
    assert _compat_tuf.updater_checks(bootstrap, url, asked[:2], delivered).root_digest == d(b"root 3")  # type: ignore[union-attr]
    # python-tuf took root 2 from the local history (never asked for): its final root is unknown.
    assert _compat_tuf.updater_checks(bootstrap, url, asked[1:], delivered[1:]) is None
    assert _compat_tuf.updater_checks(bootstrap, url, [], delivered[2:]) is None  # every root local
    # A root asked for and not delivered in the middle of the walk cannot happen in a refresh
    # that returned; if the record ever saw one, it records nothing.
    assert _compat_tuf.updater_checks(bootstrap, url, asked, delivered[1:]) is None
    foreign = [*delivered, ("https://elsewhere.example/metadata/timestamp.json", d(b"x"))]
    assert _compat_tuf.updater_checks(bootstrap, url, asked, foreign) is None


def test_delegated_roles_fetched_after_the_refresh_are_never_recorded(
    host: tuple[TrustRepoSettings, Store], tmp_path: Path
) -> None:
    """A target look-up fetches delegated roles after python-tuf's refresh; a role may even be
    named so its URL looks like a top-level one (`1.targets.json` without consistent
    snapshots). Only what the refresh itself fetched is recorded."""
    from tuf.api.metadata import TargetFile

    settings, _store = host
    demo = DemoRepository(tmp_path / "repository", consistent_snapshot=False)
    demo.repo.add_delegated_role("1.targets", ["npm/*"])
    data = b"delegated target"
    info = TargetFile.from_data("npm/pkg.json", data, ["sha256"])
    demo.repo.delegated["1.targets"].signed.targets[info.path] = info
    demo.repo.publish()
    fetcher = RepositoryFetcher(demo.repo)
    work = tmp_path / "work"
    work.mkdir()
    session = updater.RepositorySession.from_settings(settings, work, demo.repo.root_bytes(1), None, fetcher)
    session.refresh()
    assert session.find("npm/pkg.json") is not None  # fetches the delegated role now
    delegated = [digest for url, digest in fetcher.delivered if "1.targets" in url.rsplit("/", 1)[-1]]
    assert delegated, fetcher.delivered
    checks = session.updater_checks()
    assert checks is not None
    assert {role for role, _ in checks.files} == {"timestamp", "snapshot", "targets"}
    assert not {digest for _, digest in checks.files} & set(delegated)


def test_a_root_file_rewritten_in_place_with_the_same_size_is_read_again(
    rotated: DemoRepository, tmp_path: Path, link_checks: list[str], memo: VerificationMemo
) -> None:
    """Root files are remembered by identity (ctime included), never by name."""
    anchor = rotated.repo.root_bytes(1)
    history = history_of(rotated, tmp_path / "history")
    offline.verify_root_chain(anchor, history, memo=memo)
    victim = history / "5.root.json"
    data = bytearray(victim.read_bytes())
    before = victim.stat()
    position = data.index(b'"version"')
    data[position + 1] = ord("V")  # same size, other bytes: an unknown field, the signature breaks
    deadline = before.st_ctime_ns
    while victim.stat().st_ctime_ns == deadline:  # a new ctime tick (coarse clocks: a few ms)
        os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    with victim.open("r+b") as handle:
        handle.write(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back; ctime cannot be
    assert victim.stat().st_size == before.st_size
    with pytest.raises(CacheVerificationError, match=r"root v5"):
        offline.verify_root_chain(anchor, history, memo=memo)


def test_a_target_checked_once_is_not_hashed_again_until_its_identity_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memo: VerificationMemo
) -> None:
    """A bundle import checks each target where it will stay; the commit's verification then
    finds the same file (same identity) checked against the same length and hashes."""
    from tuf.api.exceptions import LengthOrHashMismatchError
    from tuf.api.metadata import TargetFile

    data = os.urandom(3 << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    info = TargetFile.from_data("big.bin", data, ["sha256"])
    hashed: list[str] = []
    real = TargetFile.verify_length_and_hashes

    def counting(self: TargetFile, handle: Any) -> None:
        hashed.append(self.path)
        real(self, handle)

    monkeypatch.setattr(TargetFile, "verify_length_and_hashes", counting)
    offline.check_target_file(info, path, memo=memo)
    offline.check_target_file(info, path, memo=memo)
    assert hashed == ["big.bin"]
    other = TargetFile.from_data("big.bin", data + b"!", ["sha256"])  # other expectations: checked
    with pytest.raises(LengthOrHashMismatchError):
        offline.check_target_file(other, path, memo=memo)

    before = path.stat()
    while path.stat().st_ctime_ns == before.st_ctime_ns:  # a new ctime tick (coarse clocks)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with path.open("r+b") as handle:  # same inode, same size, one bit flipped
        handle.seek(1000)
        handle.write(bytes([data[1000] ^ 1]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back; ctime cannot be
    with pytest.raises(LengthOrHashMismatchError):
        offline.check_target_file(info, path, memo=memo)
