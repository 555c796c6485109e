"""What stella-trust relies on in python-tuf (7.x) beyond its public API, in one place.

- **What a refresh verified.** `Updater.refresh()` does not say which bytes it accepted under
  which root; `updater_checks` infers it from the URLs python-tuf asked our fetcher for and
  the bodies it delivered, which relies on python-tuf's fetch order (TUF spec 5.3-5.6: roots
  N+1, N+2, ... until a 404, then timestamp, snapshot, targets) and on it raising on any body
  it does not accept. `UpdaterChecks` carries the result (decision 14).
- **A pull that does not judge expiry** (`ignore_expiry`): the Updater's reference time, the
  private `_trusted_set.reference_time`, moved to the start of time (decision 10).

`missing()` says what an installed python-tuf lacks of this, and a unit test fails loudly on
an upgrade that changes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple


def missing() -> list[str]:
    """What this module relies on that the installed python-tuf lacks."""
    from tuf.ngclient._internal import trusted_metadata_set

    found = []
    if "reference_time" not in trusted_metadata_set.TrustedMetadataSet.__init__.__code__.co_names:
        found.append("tuf.ngclient._internal.trusted_metadata_set.TrustedMetadataSet.reference_time")
    return found


def ignore_expiry(updater: Any) -> bool:
    """Make `updater` verify everything but expiry; False when this python-tuf has no
    reference time to move (the caller refuses: never guessed)."""
    trusted_set = getattr(updater, "_trusted_set", None)
    if trusted_set is None or not isinstance(getattr(trusted_set, "reference_time", None), datetime):
        return False
    trusted_set.reference_time = datetime.min.replace(tzinfo=UTC)
    return True


# ---- what python-tuf's refresh verified -------------------------------------------------------
# A cold sync of a 100k-target repository spent half its time encoding targets.json to canonical
# JSON twice: once inside python-tuf's refresh (TUF spec 5.6.3, threshold of root's targets keys)
# and again in the independent verification before the commit. Both checks are the same library
# call (`Root.verify_delegate`) on the same two inputs: the root python-tuf trusted after its root
# walk and the file's bytes. So when both inputs are *byte for byte* the ones the verification
# before the commit meets, python-tuf's check is that check (decision 14).


class UpdaterChecks(NamedTuple):  # not a dataclass: built at every start-up (issue 24)
    """Top-level files python-tuf's refresh verified, by content, and the root it used.

    `root_digest` is the SHA-256 of the root python-tuf trusted when it verified timestamp,
    snapshot and targets (TUF spec 5.3.10-5.6.3: the final root of its walk); `files` holds
    (role, SHA-256 of the bytes the fetcher delivered). python-tuf raises on any body it does
    not accept, so after a refresh that returned, every delivered body was accepted."""

    root_digest: bytes
    files: frozenset[tuple[str, bytes]]

    def covers(self, root_digest: bytes, role: str, file_digest: bytes) -> bool:
        """True if python-tuf verified exactly these bytes as `role` under exactly this root."""
        return root_digest == self.root_digest and (role, file_digest) in self.files


_ROOT_URL = re.compile(r"([0-9]+)\.root\.json")
_TOP_LEVEL_URL = re.compile(r"(?:[0-9]+\.)?(timestamp|snapshot|targets)\.json")


def updater_checks(
    bootstrap: bytes,
    metadata_url: str,
    attempted: list[str],
    delivered: list[tuple[str, bytes]],
) -> UpdaterChecks | None:
    """What one `Updater.refresh()` verified, from the URLs its fetcher was asked for and the
    bodies it delivered *during that refresh* (the caller slices both to it: a refresh fetches
    only roots and the top-level roles, never a delegated role, so no delegated body can be
    taken for `targets` — e.g. a role named `1.targets` of a repository without consistent
    snapshots, fetched later as `1.targets.json` by a target look-up).

    The root the walk ended with (TUF spec 5.3.4-5.3.5) is known only when python-tuf
    downloaded every root after the bootstrap: the root URLs asked for must be exactly
    bootstrap+1, bootstrap+2, ... with every one delivered but possibly the last (the 404
    that ends the walk). A gap means python-tuf took a root from the local history, which a
    cache writer could remove before the check: then nothing is recorded (None)."""
    try:
        bootstrap_version = int(json.loads(bootstrap)["signed"]["version"])
    except (ValueError, KeyError, TypeError):
        return None
    roots: dict[int, bytes] = {}
    files: set[tuple[str, bytes]] = set()
    for url, body_digest in delivered:
        if not url.startswith(metadata_url):
            return None  # a redirect-free refresh asks only under the metadata URL
        name = url[len(metadata_url) :]
        if (root := _ROOT_URL.fullmatch(name)) is not None:
            roots[int(root.group(1))] = body_digest
        elif (top := _TOP_LEVEL_URL.fullmatch(name)) is not None:
            files.add((top.group(1), body_digest))
    asked = [
        int(match.group(1))
        for url in attempted
        if url.startswith(metadata_url) and (match := _ROOT_URL.fullmatch(url[len(metadata_url) :]))
    ]
    if not asked or asked != list(range(bootstrap_version + 1, bootstrap_version + 1 + len(asked))):
        return None
    if set(roots) not in (set(asked), set(asked[:-1])):
        return None
    newest = roots[max(roots)] if roots else hashlib.sha256(bootstrap).digest()
    return UpdaterChecks(newest, frozenset(files))
