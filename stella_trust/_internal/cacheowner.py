"""Who a cache belongs to, and what root does about it before it writes there (decision 17):
give the owner back what an older root-run writer left root's, say why root cannot act as
the owner, and make the `instances/` directory of named instances (decision 23)."""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

from stella_trust._internal.credentials import Owner
from stella_trust._internal.fs import real_directory, set_access, share_tree
from stella_trust._internal.settings import INSTANCES_DIR
from stella_trust.errors import UnsafeFileError

if TYPE_CHECKING:
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
