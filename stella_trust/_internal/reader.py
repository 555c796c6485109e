"""Reading cached trust: re-verify the current generation, then build the view.

Every read re-verifies the chain from the trust anchor and every target hash
(docs/design.md, decision 2) and checks the rollback floor, then refuses stale trust
unless the caller explicitly asks to inspect it. `open_trust()` is the public door.

`load_target` serves one target's bytes from such a read (the bytes the verification just
checked, never a second look at the file), and `generation_view` verifies an earlier
generation the store still keeps the same way, so `trust diff` describes only verified trust.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from stella_trust._internal.cachestate import CacheState
from stella_trust._internal.hostpolicy import parts_of, view_of
from stella_trust._internal.memo import FileIdentity, VerificationMemo
from stella_trust._internal.policy.build import view_at
from stella_trust._internal.policy.freshness import require_usable
from stella_trust._internal.policy.names import match_name
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Generation, Store, generation_sequence
from stella_trust._internal.timefmt import utcnow
from stella_trust._internal.tuf.offline import VerifiedTrust, verify_generation
from stella_trust._internal.tuf.rollback import rollback_violations
from stella_trust.errors import CacheUnreadableError, CacheVerificationError, UnknownTargetError
from stella_trust.view import TargetEntry, TrustView


def verified_current(store: Store, memo: VerificationMemo | None = None) -> VerifiedTrust:
    """The current generation verified from the anchor, for callers that need no state.json fields."""
    return verified_current_with_state(store, memo)[0]


def verified_current_with_state(
    store: Store, memo: VerificationMemo | None = None
) -> tuple[VerifiedTrust, CacheState]:
    """The current generation, verified from the anchor and checked against the floor.

    A writer may switch generations (and raise the floor) while we read: the generation and
    the floor are compared only when `current` did not move in between, else read again, so
    a sync in progress never looks like a rollback (nor hides one). A file this user may not
    read is reported as such, naming the readers' group (decision 17), never as an edited
    cache with a hint to sync. `memo`: what this process already verified (decision 13).
    """
    try:
        if memo is None:  # nothing outlives this read: no identity to remember it under
            return _verified_current_with_state(store, VerificationMemo(), remember=False)
        return _verified_current_with_state(store, memo)
    except CacheUnreadableError as exc:
        if exc.hint:  # already in the reader's words (the anchor, read by the store)
            raise
        raise store.unreadable(exc.message) from None
    except PermissionError as exc:
        raise store.unreadable(f"{exc.filename or 'a file'}: permission denied") from None


def _verified_current_with_state(
    store: Store, memo: VerificationMemo, *, remember: bool = True
) -> tuple[VerifiedTrust, CacheState]:
    """Up to three reads: a verification that fails or finds a rollback while a writer moved
    `current` under it is retried on the new generation (a commit in progress is not an attack); the
    last attempt's verdict stands. A result is remembered only when the identity of everything it
    read held still across the read (decision 13). `remember` False: the memo is this read's own
    (a one-shot command), so nothing could ever look the result up; the identity of every file
    (a scan and a stat each, twice) is not taken. The verification itself is the same."""
    anchor = store.read_anchor()
    for attempt in range(3):
        generation = store.current()
        if generation is None:
            raise CacheVerificationError(
                f"cache {store.root} holds no trust yet",
                hint="run `trust sync`",
                bundle_only_hint="run `trust import BUNDLE` (a bundle made on a connected host with "
                "`trust snapshot export --out BUNDLE`)",
            )
        identity = _identity_of(store, generation, anchor) if remember else None
        remembered = memo.generations.get(identity) if identity is not None else None
        if remembered is not None:
            return cast(tuple[VerifiedTrust, CacheState], remembered)
        try:
            verified = verify_generation(generation, anchor, store.committed_roots_dir, memo=memo)
            state = store.read_state()
            lower = rollback_violations(state.floor, verified.metadata)
        except CacheVerificationError:
            if attempt < 2 and _moved(store, generation):
                continue
            raise
        if lower and attempt < 2 and _moved(store, generation):
            continue
        if lower:
            raise CacheVerificationError(
                f"cache holds older trust than this host already committed: {', '.join(lower)}",
                hint="the cache was rolled back on disk; run `trust sync` to restore current trust",
                bundle_only_hint="the cache was rolled back on disk; restore current trust with "
                "`trust import BUNDLE`",
            )
        if identity is not None and identity == _identity_of(store, generation, anchor):
            memo.generations.put(identity, (verified, state))
        return verified, state
    raise AssertionError("unreachable")  # the last attempt returns or raises


# ---- the verified-view memo ------------------------------------------------------------------
# A long-lived attestor calls open_trust() on every verification. Re-verifying an unchanged
# cache proves nothing new, so the result of a verification is remembered under the identity
# of everything it read: the anchor bytes and the pin, the generation, and (device, inode,
# size, mtime_ns, ctime_ns) of every file in it, of the committed roots and of the state
# file. Any write, replacement or touch changes an identity (a writer can set mtime back, not
# ctime), and then the cache is verified again from the anchor. Freshness is still judged
# on every call (build_view takes `now`). The memo lives in memory only (memo.py).


def _file_identities(root: Path) -> list[tuple[str, FileIdentity]]:
    """(path, identity) of every file under `root`, sorted; links are stat'ed as links, never
    followed, so a link replaced or planted changes the identity itself."""
    found = []
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                found.append((entry.path, FileIdentity.of(entry.stat(follow_symlinks=False))))
    found.sort()
    return found


def _identity_of(store: Store, generation: Generation, anchor: bytes) -> tuple[Any, ...] | None:
    """What a verification of `generation` depended on; None when it cannot be read whole
    (then nothing is remembered and the read verifies as always)."""
    try:
        extra = [store.state_path, store.anchor_path]
        files = _file_identities(generation.path)
        if store.committed_roots_dir.is_dir():
            files += _file_identities(store.committed_roots_dir)
        for path in extra:
            files.append((str(path), FileIdentity.of(os.stat(path))))
    except OSError:
        return None
    return (str(generation.path), hashlib.sha256(anchor).hexdigest(), store.anchor_sha256, tuple(files))


def _moved(store: Store, generation: Generation) -> bool:
    """Whether a writer switched `current` since `generation` was read (then a failure may be that
    race)."""
    latest = store.current()
    return latest is not None and latest.path != generation.path


def load_view(
    settings: TrustRepoSettings,
    store: Store,
    now: datetime | None = None,
    memo: VerificationMemo | None = None,
) -> TrustView:
    """Re-verify the current generation from the anchor and build the view (stale allowed)."""
    return load_view_of_generation(settings, store, now, memo)[0]


def load_view_of_generation(
    settings: TrustRepoSettings,
    store: Store,
    now: datetime | None = None,
    memo: VerificationMemo | None = None,
) -> tuple[TrustView, Generation]:
    """`load_view`, with the generation it read (a writer may switch `current` meanwhile)."""
    verified, state = verified_current_with_state(store, memo)  # None: a one-shot read
    return _view(verified, state, settings, now or utcnow(), memo or VerificationMemo()), verified.generation


def _view(
    verified: VerifiedTrust,
    state: CacheState,
    settings: TrustRepoSettings,
    now: datetime,
    memo: VerificationMemo,
) -> TrustView:
    """The view built from a remembered verification, judged again at each call's `now`
    (view_at): keys, certificates and the trusted root are parsed once per verification, not
    per read. Remembered with the very objects the verification and settings memos hand out
    (kept in the value, and compared by identity, so a reused id can never match); any change
    yields new objects and a new build."""
    key = (id(verified), id(state), id(settings))
    seen = memo.views.get(key)
    if seen is not None and seen[0] is verified and seen[1] is state and seen[2] is settings:
        return view_at(seen[3], now)
    parts = parts_of(verified, settings, state, now)
    memo.views.put(key, (verified, state, settings, parts))
    return parts.view


def open_trust(
    cache_dir: Path | str | None = None,
    *,
    config_path: Path | str | None = None,
    now: datetime | None = None,
    allow_stale: bool = False,
    allow_env_service_map: bool = False,
    memo: VerificationMemo | None = None,
    instance: str | None = None,
) -> TrustView:
    """Verified, fresh (or in-grace) trust for an attestor; raises StellaError otherwise.

    `cache_dir` defaults to the configured `local_cache_path`. Stale trust raises
    `StaleTrustError` unless `allow_stale=True` (for display, never for verification).
    STELLA_SIGSTORE_SERVICE_MAP (which replaces the signed service map) is ignored unless
    `allow_env_service_map=True`: an attestor's environment is not the operator's word.
    `memo`: what this process remembers (stella_trust.api keeps one per process).
    `instance`: a named instance of the config (decision 23); `cache_dir` then names the host's
    cache, as `--cache-dir` does, and the instance's own is `instances/<NAME>/` under it.
    """
    from stella_trust._internal.settings import DEFAULT_INSTANCE, instance_cache_path

    memo = memo or VerificationMemo()
    name = instance or DEFAULT_INSTANCE
    overrides: dict[str, Any] = {}
    if cache_dir is not None:
        base = Path(cache_dir)
        overrides["local_cache_path"] = base if name == DEFAULT_INSTANCE else instance_cache_path(base, name)
    settings = _settings(
        Path(config_path) if config_path else None, overrides, allow_env_service_map, memo, name
    )
    try:
        view = load_view(settings, Store.of(settings), now, memo)
    except OSError as exc:
        raise CacheVerificationError(
            f"cache {settings.local_cache_path} is unreadable: {exc.strerror or exc}",
            hint="readers need the stella-trust group (the cache directory is 0750)",
        ) from exc
    if name != DEFAULT_INSTANCE:
        view = replace(view, instance=name)
    if allow_stale:
        return view
    return require_usable(view, utcnow())


def _settings(
    config_path: Path | None,
    overrides: dict[str, Any],
    env_service_map: bool,
    memo: VerificationMemo,
    instance: str = "default",
) -> TrustRepoSettings:
    """Settings for open_trust, re-read only when the config file (its identity), the
    STELLA_* environment or the arguments change: parsing YAML was half of every read."""
    from stella_trust._internal.settings import default_config_path

    path = config_path or default_config_path()
    try:
        file_identity: FileIdentity | None = FileIdentity.of(os.stat(path))
    except OSError:
        file_identity = None
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("STELLA_")))
    key = (
        str(path),
        file_identity,
        environment,
        tuple(sorted((k, str(v)) for k, v in overrides.items())),
        env_service_map,
        instance,
    )
    cached = memo.settings.get(key)
    if cached is None:
        cached = load_settings(config_path, overrides, env_service_map=env_service_map, instance=instance)
        memo.settings.put(key, cached)
    return cast(TrustRepoSettings, cached)


def load_target(
    settings: TrustRepoSettings,
    store: Store,
    name: str,
    now: datetime | None = None,
    memo: VerificationMemo | None = None,
) -> tuple[TrustView, TargetEntry, bytes]:
    """One cached target's bytes, verified on this read; stale trust refused.

    The whole current generation is re-verified from the anchor (as every read is), the
    view is built and must be usable (`require_usable`), then the bytes handed out are the
    ones that verification checked against the signed length and hashes (a large target is
    read and checked again). `name` may omit the extension when unique; an unknown name
    fails naming the close ones.
    """
    verified, state = verified_current_with_state(store, memo)
    view = require_usable(view_of(verified, settings, state, now or utcnow()), utcnow())
    resolved = _cached_name(name, list(verified.target_info))
    data = verified.read_target(resolved)
    entry = next(t for t in view.targets if t.name == resolved)
    if len(data) != entry.length or (entry.sha256 and hashlib.sha256(data).hexdigest() != entry.sha256):
        raise CacheVerificationError(f"target {resolved}: length or hash mismatch on read")
    return view, entry, data


def _cached_name(name: str, stored: list[str]) -> str:
    """Exact, else the unique `<name>.<ext>`; an unknown name lists the close cached names."""
    if name not in stored and not any(n.startswith(name + ".") for n in stored):
        close = difflib.get_close_matches(name, stored, n=5, cutoff=0.5)
        listed = f"close names: {', '.join(close)}" if close else f"cached: {', '.join(stored) or 'none'}"
        raise UnknownTargetError(
            f"Unknown target {name!r}: not in the cached trust ({listed})",
            hint="`trust status` lists the cached targets; pin others in pinned_targets, then `trust sync`",
        )
    return match_name(name, stored)


def previous_generation(store: Store, current: Generation | None = None) -> Generation | None:
    """The generation `current` (default: the store's) replaced, if the store still keeps it
    (a commit keeps the one it replaces for readers still inside it, and prunes it at the
    next commit). Generations order by their commit sequence, never by a clock."""
    current = current or store.current()
    if current is None:
        return None
    mark = generation_sequence(current.path.name)
    older = [
        generation
        for generation in store.generations()
        if generation.path.name != current.path.name
        and generation.path.is_dir()
        and (mark is None or (generation_sequence(generation.path.name) or 0) < mark)
    ]
    return older[-1] if older else None


def generation_view(
    settings: TrustRepoSettings,
    store: Store,
    generation: Generation,
    now: datetime | None = None,
    memo: VerificationMemo | None = None,
) -> TrustView:
    """A view of one generation of this store, verified as a read of the current one is:
    root chain from the anchor (and the roots kept beside the generations), every role, every
    stored target's length and hashes. No rollback floor (an earlier generation is older than
    the floor by design) and stale allowed: this is for describing, never for serving."""
    path = generation.path
    if path.parent != store.generations_dir or path.name.startswith(".") or path.is_symlink():
        raise CacheVerificationError(f"{path} is not a generation of the cache {store.root}")
    if not path.is_dir():
        raise CacheVerificationError(f"generation {path.name} is not in the cache any more")
    verified = verify_generation(generation, store.read_anchor(), store.committed_roots_dir, memo=memo)
    return view_of(verified, settings, None, now or utcnow())
