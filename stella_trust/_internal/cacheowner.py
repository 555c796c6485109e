"""Who a cache belongs to and who may read it (decision 17): what root does before it writes
there (give the owner back what an older root-run writer left root's, say why root cannot act
as the owner, make the `instances/` directory of named instances, decision 23), the readers'
group, and what every writer checks and puts right when it takes the lock (decision 18)."""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from stella_trust._internal.cachelayout import (
    CURRENT_LINK,
    GENERATIONS_DIR,
    SHARED_DIRS,
    SHARED_FILES,
    WORK_PREFIX,
)
from stella_trust._internal.fs import real_directory, remove_entries, set_access, share_tree
from stella_trust._internal.settings import INSTANCES_DIR
from stella_trust.errors import CacheUnreadableError, UnsafeFileError

if TYPE_CHECKING:
    from stella_trust._internal.credentials import Owner
    from stella_trust._internal.store import Store

CACHE_DIR_MODE = 0o750
CACHE_FILE_MODE = 0o640


def user_name(uid: int) -> str:
    """A user's name (or the bare uid), for the lines that tell someone what to run as whom."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def cannot_act_as(root: Path, owner: Owner | None, exc: OSError) -> UnsafeFileError:
    """Root writes the cache with its owner's uid and groups (a planted link can then reach only
    what the owner could reach already); a system that will not let root give them up is told
    to run the writer as the owner instead."""
    name = user_name(owner.uid) if owner is not None else "its owner"
    return UnsafeFileError(
        f"cannot write the cache {root} as its owner {name}: {exc.strerror or exc}",
        hint=f"run the writer as that user (`sudo -u {name} trust ...`)",
    )


def adopt_for(store: Store, owner: Owner) -> None:
    """Root, before it gives up its uid: entries an older root-run writer left root's are given
    to the cache owner (who must be able to replace and prune them). The check is a few stats of
    the top-level entries and the generations; the walk (descriptor-relative, share_tree) runs
    only when one of them is someone else's."""
    if not real_directory(store.root):
        return  # an instance's cache not made yet (or a link, refused under the lock)
    entries = [store.anchor_path, store.state_path, store.lock_path]
    for directory in (store.generations_dir, store.committed_roots_dir, store.sealed_logs_dir):
        entries.append(directory)
        with contextlib.suppress(OSError):
            entries.extend(directory.iterdir())
    for entry in entries:
        try:
            foreign = os.lstat(entry).st_uid != owner.uid
        except FileNotFoundError:
            continue
        if foreign:
            share_tree(
                store.root,
                CACHE_DIR_MODE,
                CACHE_FILE_MODE,
                owner.gid,
                uid=owner.uid,
                skip_dirs={INSTANCES_DIR},
            )
            return


def prepare_instances_dir(root: Path) -> None:
    """A named instance's cache is `<default cache>/instances/<NAME>/` (decision 23): the
    `instances` directory is made like the cache (0750, the default cache's group), and one
    replaced by a link is refused, as the cache's own subdirectories are (a link would steer
    this writer into the directory it names)."""
    parent = root.parent
    if parent.name != INSTANCES_DIR:
        return
    if not real_directory(parent):
        parent.mkdir(parents=True, exist_ok=True, mode=CACHE_DIR_MODE)
        real_directory(parent)
        with contextlib.suppress(PermissionError):  # not the owner: the owner's modes stand
            set_access(parent, CACHE_DIR_MODE, os.stat(parent.parent).st_gid)


# ---- readers' access (decision 17) ---------------------------------------------------------
def readers_gid(root: Path) -> int | None:
    """The readers' group: the one that owns the cache directory."""
    try:
        return os.stat(root).st_gid
    except OSError:
        return None


def group_name(gid: int | None) -> str:
    """The readers' group by name, for the one line that tells a user which group to join."""
    if gid is None:
        return "that owns the cache directory"
    import grp  # only this message names a group: readers never load it otherwise

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def unreadable(root: Path, detail: str) -> CacheUnreadableError:
    """A reader without access: one line naming the readers' group, never "sync"."""
    group = group_name(readers_gid(root))
    user = user_name(os.geteuid())
    return CacheUnreadableError(
        f"cannot read the cache {root}: {detail}; readers must be in the group {group}",
        hint=f"add this user to it (`sudo usermod -aG {group} {user}`), then log in again; "
        "the cached trust itself is not affected",
    )


# ---- what every writer does under the lock, from one listing of the cache directory ----------
Listing = dict[str, os.DirEntry[str]]


def refuse_planted_links(root: Path, top: Listing) -> None:
    """The cache's subdirectories are ours: one replaced by a link (by whoever owns the cache, when
    root writes it) would steer root's writes and prunes into the directory it names. Checked
    when the lock is taken, from the listing taken then (`top`: its entries say their kind; one
    that does not say a directory is looked at again by `real_directory`, which refuses it); the
    removals below also go through a descriptor that never follows a link, so a swap after this
    check removes nothing outside the cache."""
    for name in SHARED_DIRS:
        entry = top.get(name)
        if entry is not None and not entry.is_dir(follow_symlinks=False):
            real_directory(root / name)


def remove_abandoned_work(root: Path, top: Listing) -> None:
    """A writer killed mid-sync leaves a work directory (or a temp link); the lock holder removes
    them (`top`: the cache directory's listing, taken under the lock)."""
    abandoned = [entry.path for name, entry in top.items() if name.startswith(f".{CURRENT_LINK}.")]
    for link in abandoned:
        Path(link).unlink(missing_ok=True)
    if not _work_left_in(os.path.join(root, GENERATIONS_DIR)):
        return
    remove_entries(root / GENERATIONS_DIR, lambda name: name.startswith(WORK_PREFIX))


def _work_left_in(generations: str) -> bool:
    """Whether a working copy may be left in `generations`, asked by name (no descriptor to open
    and duplicate): nearly always none is. A directory that cannot be listed by name (absent, not a
    directory) answers yes, so `remove_entries` says which, as before."""
    try:
        names = os.listdir(generations)
    except OSError:
        return True
    return any(name.startswith(WORK_PREFIX) for name in names)


def share_with_readers(root: Path, top: Listing, current: str | None) -> int | None:
    """Every writer, under the lock: the cache directory is 0750, and what readers read is 0640
    and group-owned. A cache written before this rule (python-tuf writes 0600 files; a root-run
    import made root-owned ones) is put right here, once: the check is a few stats of the
    top-level entries (`top`) and the `current` generation, the tree walk only runs when one of
    them is wrong. Answers the readers' group it worked with (None when it had nothing to put
    right: not the owner), which the writer keeps while it holds the lock."""
    try:
        root_st = os.lstat(root)
        set_access(root, CACHE_DIR_MODE, None, root_st)
    except PermissionError:
        return None  # not the owner (e.g. a reader given the lock file): nothing to put right
    # the directory's own lstat says its group (a cache path that is a link is stat'ed through it)
    gid = root_st.st_gid if stat.S_ISDIR(root_st.st_mode) else readers_gid(root)
    top_dir = os.fspath(root)
    entries = [name for name in (*SHARED_DIRS, *SHARED_FILES) if name in top]
    if current is not None:
        entries.append(os.path.join(GENERATIONS_DIR, current))
    for entry in entries:  # names, not path objects: every writer runs this under the lock
        path = os.path.join(top_dir, entry)
        try:
            st = top[entry].stat(follow_symlinks=False) if entry in top else os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):  # one lstat each; a link is never as wanted
            if entry in SHARED_FILES and not os.path.isfile(path):
                continue
            wanted = -1
        elif entry in SHARED_FILES and not stat.S_ISREG(st.st_mode):  # only when they are files
            continue
        else:
            wanted = CACHE_DIR_MODE if stat.S_ISDIR(st.st_mode) else CACHE_FILE_MODE
        if st.st_gid != gid or (st.st_mode & 0o777) != wanted:
            # named instances' caches under it are theirs (each its own writer and rules)
            share_tree(root, CACHE_DIR_MODE, CACHE_FILE_MODE, gid, skip_dirs={INSTANCES_DIR})
            return gid
    return gid
