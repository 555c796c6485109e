"""Judging a workspace against the served state by version *and* content (repository/merge.py),
and the version marks every signature must stay above (repository/ledger.py), in process."""

from __future__ import annotations

from pathlib import Path

from tuf.api.serialization.json import JSONSerializer

from stella_trust.repository import Repository
from stella_trust.repository.ledger import Ledger
from stella_trust.repository.merge import AHEAD, FORK, NEWER, REPAIR, SAME, merge
from stella_trust.repository.state import State


def snapshot_of(repo: Repository) -> State:
    """A repository's state as bytes, the way `served.local_state` reads it."""
    serializer = JSONSerializer(compact=False)
    return State(
        roots=list(repo.root_history),
        timestamp=repo.timestamp.to_bytes(serializer),
        snapshot=repo.snapshot.to_bytes(serializer),
        roles={"targets": repo.targets.to_bytes(serializer)},
    )


class History:
    """What each side holds as `N.targets.json`, and what the ledger saw served."""

    def __init__(self) -> None:
        self.local: dict[int, bytes] = {}
        self.served: dict[int, bytes] = {}
        self.seen: dict[int, bytes] = {}
        self.signed: set[int] = set()

    def judge(self, local: State, served: State) -> str:
        result = merge(
            local,
            served,
            local_history=lambda role, v: self.local.get(v),
            served_history=lambda role, v: self.served.get(v),
            seen=lambda role, v, data: (
                True if self.seen.get(v) == data else (False if v in self.signed else None)
            ),
        )
        return result.choices["targets"].verdict


def published(tmp_path: Path) -> tuple[Repository, State]:
    repo = Repository.create(tmp_path / "repo", root_keys=1, root_threshold=1)
    return repo, snapshot_of(repo)


def test_same_version_same_bytes_is_the_same_and_other_bytes_are_a_fork(tmp_path: Path) -> None:
    repo, served = published(tmp_path)
    history = History()
    assert history.judge(snapshot_of(repo), served) == SAME
    repo.add_target("ours.txt", b"ours")  # the same version, other content: two "targets v1"
    repo.sign_role(repo.targets)
    assert history.judge(snapshot_of(repo), served) == FORK


def test_a_newer_served_version_is_taken_only_when_ours_is_in_its_history(tmp_path: Path) -> None:
    repo, old = published(tmp_path)
    history = History()
    repo.add_target("a.txt", b"a")
    repo.publish()  # the published state moved to targets v2
    served = snapshot_of(repo)
    history.served[1] = old.roles["targets"]
    assert history.judge(old, served) == NEWER  # ours (v1) is in the served history
    history.served[1] = b"another v1"
    assert history.judge(old, served) == FORK  # the served history holds another v1
    history.served.pop(1)
    history.signed.add(1)  # ours was signed here and never seen served: the histories parted
    assert history.judge(old, served) == FORK


def test_an_older_served_version_is_a_rollback_to_repair_or_a_release_not_pushed(tmp_path: Path) -> None:
    repo, served = published(tmp_path)
    history = History()
    repo.add_target("a.txt", b"a")
    repo.publish()
    ours = snapshot_of(repo)
    history.local[1] = served.roles["targets"]
    assert history.judge(ours, served) == AHEAD  # a release signed here, not pushed yet
    history.seen[2] = ours.roles["targets"]
    assert history.judge(ours, served) == REPAIR  # ours was served: the served directory went back
    history.seen.clear()
    history.served[2] = ours.roles["targets"]  # (the served directory still has our 2.targets.json)
    assert history.judge(ours, served) == REPAIR
    history.served.clear()
    history.local[1] = b"some other v1"
    assert history.judge(ours, served) == FORK  # the served v1 is not ours


def test_root_chains_are_compared_root_by_root(tmp_path: Path) -> None:
    repo, served = published(tmp_path)
    history = History()
    ours = snapshot_of(repo)
    ours.roots = [*ours.roots, b"our unpublished root v2"]
    result = merge(
        ours,
        served,
        local_history=lambda r, v: history.local.get(v),
        served_history=lambda r, v: None,
        seen=lambda r, v, d: None,
    )
    assert result.choices["root"].verdict == AHEAD and result.roots == ours.roots
    forked = State(roots=[b"another root v1"], roles=dict(served.roles))
    result = merge(
        forked,
        served,
        local_history=lambda r, v: None,
        served_history=lambda r, v: None,
        seen=lambda r, v, d: None,
    )
    assert result.choices["root"].verdict == FORK and result.roots == served.roots


def test_the_ledger_only_goes_up_and_tells_published_from_signed(tmp_path: Path) -> None:
    ledger = Ledger.of(tmp_path)
    ledger.signed_here("targets", 8, b"ours")
    assert ledger.was_served("targets", 8, b"ours") is False and ledger.mark("targets") == 8
    ledger.raise_to("targets", 3)
    assert ledger.mark("targets") == 8  # never lowered
    ledger.saw_served("targets", 9, b"theirs")
    ledger.saw_served("targets", 8, b"ours")  # pushed after all
    ledger.save()
    again = Ledger.of(tmp_path)
    assert again.mark("targets") == 9 and again.was_served("targets", 8, b"ours") is True
    assert again.was_served("targets", 7, b"x") is None
    (tmp_path / "versions.json").write_text("{damaged")
    assert Ledger.of(tmp_path).mark("targets") == 0  # a damaged ledger falls back to the files


def test_signing_stays_above_every_version_seen(tmp_path: Path) -> None:
    repo, _ = published(tmp_path)
    repo.floors = {"timestamp": 198, "snapshot": 40, "targets": 7}
    repo.add_target("a.txt", b"a")
    repo.publish()
    assert repo.timestamp.signed.version == 199 and repo.snapshot.signed.version == 41
    assert repo.targets.signed.version == 8
