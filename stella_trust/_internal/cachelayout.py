"""The names of the cache directory's entries (store.py's docstring draws the layout), in one
place for every module that must name them: the store, and the checks every writer makes under
the lock (cacheowner.py)."""

from __future__ import annotations

ANCHOR_FILE = "anchor.root.json"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
CURRENT_LINK = "current"
GENERATIONS_DIR = "generations"
SEALED_LOGS_DIR = "tlogs"
COMMITTED_ROOTS_DIR = "roots"
WORK_PREFIX = ".work-"
INSTANCES_DIR = "instances"  # named instances' caches (settings.INSTANCES_DIR): never this Store's
SPARE_DIR = ".spare"  # the last idle sync's working copy, reused as the next one's start
MAX_ANCHOR_BYTES = 16 << 20  # a root (the anchor) of any sane size
MAX_STATE_BYTES = 1 << 20

# What every writer checks under the lock (cacheowner.share_with_readers), besides the current
# generation. Readers (attestors) are members of the group that owns the cache directory (the
# `stella-trust` group in the README's deployment): they may read, never write.
SHARED_DIRS = (GENERATIONS_DIR, COMMITTED_ROOTS_DIR, SEALED_LOGS_DIR)
SHARED_FILES = (ANCHOR_FILE, STATE_FILE, LOCK_FILE)
