"""Roots beyond the held generation: where a sync starts python-tuf, and the roots kept
beside the generations (TUF spec 5.3.11; docs/design.md decisions 14 and 16).

A sync starts python-tuf from the newest root the working copy proves from the anchor; a
root that revokes keys which signed the held trust is kept even when a later step of that
sync failed (the revoked keys must stop being trusted now), and only a root we accept is
ever kept.
"""

from __future__ import annotations

import logging
import os

from stella_trust import errors
from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.store import Generation, Store
from stella_trust._internal.tuf.offline import (
    check_root_rules,
    verify_metadata,
    verify_root_chain,
)
from stella_trust._internal.tuf.rootchain import newest_start

log = logging.getLogger("stella_trust._internal.sync")


def newest_proven_root(anchor: bytes, work: Generation, memo: VerificationMemo) -> bytes:
    """The root the Updater starts from: the newest one the working copy's root history
    proves from the anchor (TUF spec 5.3.4-5.3.5, checked by offline.verify_root_chain,
    whose links this process remembers by content, decision 14), so python-tuf does not
    walk the same local roots again on every sync. A history that does not verify is left
    to python-tuf's own walk from the anchor, which skips invalid local roots and fetches
    them from the repository."""
    try:
        return newest_start(anchor, work.metadata_dir / "root_history", memo)
    except errors.StellaError:
        return anchor


def drop_refused_committed_roots(
    store: Store, anchor: bytes, base: Generation | None, memo: VerificationMemo
) -> None:
    """Roots kept beside the generations must still be ones we accept (decision 16): a kept
    chain that no longer verifies from the anchor, or whose newest root breaks our own rules
    (kept by an earlier release that did not check them), is dropped so that the held trust
    is served again and the repository's next good root heals the host."""
    if not store.committed_roots():
        return
    history = (base.metadata_dir if base is not None else store.root / "absent") / "root_history"
    try:
        newest = verify_root_chain(anchor, history, store.committed_roots_dir, memo)[0]
        check_root_rules(newest.signed, f"root v{newest.signed.version}")
    except errors.StellaError as exc:
        log.warning("dropping the roots kept beside the cached trust: %s", exc.message)
        store.drop_committed_roots()


def adopt_committed_roots(store: Store, work: Generation) -> None:
    """Roots kept by an earlier failed sync start this one: python-tuf walks root_history
    first, so it trusts them (and the keys they revoke stay revoked)."""
    kept = store.committed_roots()
    if not kept:
        return
    history = work.metadata_dir / "root_history"
    for path in kept:
        target = history / path.name
        if not target.exists():
            history.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def keep_revoking_roots(
    store: Store, base: Generation | None, work: Generation, anchor: bytes, memo: VerificationMemo
) -> None:
    """TUF spec 5.3.11: the root walk succeeded but a later step failed. If the new root
    revoked keys that signed the cached trust (the cached metadata no longer verifies under
    it), keep the new root: the host must stop trusting the revoked keys now, not after the
    repository is reachable again. Roots that revoke nothing wait for the next sync.

    Nothing refused is persisted (decision 16): a root that breaks one of our own rules
    (offline.check_root_rules) is never kept, whatever python-tuf made of it; it would
    otherwise make every later read fail although the held trust is good. A host with no
    trust yet holds nothing a new root could revoke, so it keeps nothing either."""
    if base is None:
        return
    history = work.metadata_dir / "root_history"
    try:
        newest, chain = verify_root_chain(anchor, history, store.committed_roots_dir, memo)
        held_root = verify_root_chain(
            anchor, base.metadata_dir / "root_history", store.committed_roots_dir, memo
        )
        held = held_root[0].signed.version
        if newest.signed.version <= held:
            return
        check_root_rules(newest.signed, f"root v{newest.signed.version}")
    except errors.StellaError:
        return
    try:
        verify_metadata(base.metadata_dir, anchor, history, memo=memo)
        return  # the cached trust still verifies under the new root: nothing was revoked
    except errors.StellaError:
        pass
    first = newest.signed.version - len(chain) + 1
    store.commit_roots({first + i: data for i, data in enumerate(chain) if first + i > held})
    log.warning(
        "root v%d committed although the sync failed: it revokes keys that signed the cached trust",
        newest.signed.version,
    )
