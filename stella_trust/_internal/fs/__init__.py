"""The one way files are written, read from shared directories, and locked.

Every writer (the cache store, the config, operator keys and metadata, bundles, the
metrics file) goes through here so that a reader only ever sees the old or the new
content (docs/design.md, decision 6) and a power cut cannot leave a half-written file.

**Files in directories other users can write** (the cache, which the service user owns and
readers share; a served directory; a USB drive; bundle staging; a mirror directory) are
opened only through `open_untrusted` (or `open_untrusted_fd`, its checks answered with the bare
descriptor) / `read_untrusted` / `create_exclusive`: never through a
symbolic link planted there (O_NOFOLLOW), never a FIFO or device (O_NONBLOCK, then fstat must
say regular file), never more than a stated size, and created only where nothing stands
(O_EXCL). Writers into such a directory outside the cache (a push into a served directory,
keys onto a drive, an export beside OUT) hold it open as an `OpenDir` and do everything
relative to its descriptor: no path below it is resolved twice. The threat model in
docs/design.md names each such directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stella_trust._internal.fs.access import (
    set_access as set_access,
)
from stella_trust._internal.fs.access import (
    set_access_at as set_access_at,
)
from stella_trust._internal.fs.access import (
    share_tree as share_tree,
)
from stella_trust._internal.fs.files import (
    atomic_write as atomic_write,
)
from stella_trust._internal.fs.files import (
    create_exclusive as create_exclusive,
)
from stella_trust._internal.fs.files import (
    exclusive_lock as exclusive_lock,
)
from stella_trust._internal.fs.files import (
    file_ids as file_ids,
)
from stella_trust._internal.fs.files import (
    fsync_dir as fsync_dir,
)
from stella_trust._internal.fs.files import (
    fsync_tree as fsync_tree,
)
from stella_trust._internal.fs.files import (
    open_beneath as open_beneath,
)
from stella_trust._internal.fs.files import (
    open_untrusted as open_untrusted,
)
from stella_trust._internal.fs.files import (
    open_untrusted_fd as open_untrusted_fd,
)
from stella_trust._internal.fs.files import (
    read_bounded as read_bounded,
)
from stella_trust._internal.fs.files import (
    read_bounded_fd as read_bounded_fd,
)
from stella_trust._internal.fs.files import (
    read_untrusted as read_untrusted,
)
from stella_trust._internal.fs.files import (
    read_untrusted_stat as read_untrusted_stat,
)
from stella_trust._internal.fs.files import (
    real_directory as real_directory,
)
from stella_trust._internal.fs.files import (
    remove_entries as remove_entries,
)

if TYPE_CHECKING:
    from stella_trust._internal.fs.opendir import (
        OpenDir as OpenDir,
    )
    from stella_trust._internal.fs.opendir import (
        write_output as write_output,
    )

_WRITERS_ONLY = ("OpenDir", "write_output")


def __getattr__(name: str) -> Any:
    """The writers' names (a push, an export, `--out`), imported on first use: a reader such as
    `trust status` never loads them (issue 24)."""
    if name in _WRITERS_ONLY:
        from stella_trust._internal.fs import opendir

        return getattr(opendir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
