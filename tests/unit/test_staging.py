"""staged/ roles read by the one rule `publish` and a root change's `commit` share
(`Staging.role`): absent is None, a file that is not targets metadata is refused in one line
with the command that drops it, and a good one comes back as python-tuf parsed it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets

from stella_trust.repository.outcome import RepoError
from stella_trust.repository.staging import Staging


def test_a_staged_role_is_read_or_refused_with_the_command_that_drops_it(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staged", "--path /srv/tuf")
    assert staging.role("targets") is None and staging.role("team/releases") is None

    signed = Targets(version=7, expires=datetime(2030, 1, 1, tzinfo=UTC))
    staging.save_role("team/releases", Metadata(signed))
    held = staging.role("team/releases")
    assert held is not None and held.signed.version == 7
    assert staging.role_path("team/releases") == tmp_path / "staged" / "roles" / "team%2Freleases.json"

    staging.role_path("targets").write_text("<html>not metadata</html>")
    with pytest.raises(RepoError) as caught:
        staging.role("targets", then=", then stage the change again")
    assert caught.value.message.startswith(f"{staging.role_path('targets')} is not targets metadata (")
    assert "\n" not in caught.value.message
    assert caught.value.hint == "drop it: `trust repo clean --path /srv/tuf`, then stage the change again"
    with pytest.raises(RepoError) as plain:
        staging.role("targets")
    assert plain.value.hint == "drop it: `trust repo clean --path /srv/tuf`"
    # the refusal changed nothing: the good staged role is still there and still reads
    held_again = staging.role("team/releases")
    assert held_again is not None and held_again.signed.version == 7
