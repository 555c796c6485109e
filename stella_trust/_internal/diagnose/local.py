"""`trust doctor`'s checks of this host: config, cache, anchor, trust, freshness, pins, the
last sync and the agent's metrics."""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stella_trust._internal.credentials import Owner, acts_as_owner
from stella_trust._internal.diagnose.result import Check, fail, ok, warn
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust._internal.store import Store
from stella_trust._internal.timefmt import human_duration, iso, parse_iso
from stella_trust.errors import StellaError
from stella_trust.view import FreshnessState, TrustView

# The agent refreshes (and rewrites its metrics) every interval, ± jitter, sooner after a
# failure: two intervals and a margin without a sign of it means it is not running.
OVERDUE_MARGIN = timedelta(minutes=5)

WRITER_HINT = (
    "the cache is written by the stella-trust user (the agent, `trust sync`, `trust import`): "
    "run as that user (`sudo -u stella-trust trust doctor`), or give it the directory: "
    "`chown -R stella-trust:stella-trust {path} && chmod 0750 {path}`; attestors in the "
    "stella-trust group only read it"
)
READ_ONLY_HINT = (
    "the file system holding {path} is read-only here (a read-only mount, or a systemd unit "
    "that does not list it in StateDirectory=/ReadWritePaths=); the stella-trust user must be "
    "able to write the cache"
)
AGENT_HINT = (
    "is the agent running? `systemctl status stella-trust-agent` (or the stella-trust-sync "
    "timer); under the hardened unit the textfile directory needs ReadWritePaths="
)

# ---- config -----------------------------------------------------------------------------


def check_config(load: Callable[[], TrustRepoSettings], path: Path) -> tuple[Check, TrustRepoSettings | None]:
    """The settings load (file < environment < flags) and validate, as for every command."""
    try:
        settings = load()
    except StellaError as error:
        return fail("config", error.message, error.hint), None
    except OSError as exc:
        hint = f"make {path} readable by this user (root writes the config; 0644 lets everyone read it)"
        return fail("config", f"{path}: cannot read: {exc.strerror or exc}", hint), None
    if not path.exists():
        return (
            warn(
                "config",
                f"no config file at {path}: defaults, environment and flags only",
                "run `trust init --tuf-url URL --root ROOT.json` (it writes the config), or pass --config",
            ),
            settings,
        )
    return ok("config", f"{path}: attestor.trust_repo is valid"), settings


def _reader_hint(path: Path) -> str:
    """The way out when this user may not read a file: permissions, never a sync."""
    return f"make {path} readable by this user"


# ---- cache ------------------------------------------------------------------------------


def check_cache(path: Path) -> tuple[Check, bool]:
    """The cache directory exists and this user can write it (a file is created and removed);
    the flag says whether it can at least be read, so trust can still be checked."""
    try:
        info = path.stat()
    except OSError as exc:
        create = (
            "run `trust init` as the stella-trust user, or create the directory owned by "
            "stella-trust:stella-trust with mode 0750 (`install -d -o stella-trust -g stella-trust "
            f"-m 0750 {path}`)"
        )
        if exc.errno == errno.ENOENT:
            return fail("cache", f"{path} does not exist", create), False
        if exc.errno == errno.ENOTDIR:
            detail = f"{path} cannot exist: a part of that path is a file, not a directory"
            return fail("cache", detail, create), False
        return fail("cache", f"{path}: {exc.strerror or exc}", WRITER_HINT.format(path=path)), False
    if not stat.S_ISDIR(info.st_mode):
        return fail(
            "cache", f"{path} is not a directory", f"remove it, then run `trust init` ({path})"
        ), False
    owner = f"owner {_user(info.st_uid)}:{_group(info.st_gid)}, mode {stat.S_IMODE(info.st_mode):04o}"
    readable = os.access(path, os.R_OK | os.X_OK)
    problem = _write_probe(path)
    if problem is None and not os.access(path, os.W_OK | os.X_OK):
        problem = OSError(errno.EACCES, os.strerror(errno.EACCES))
    if problem is not None:
        me = _user(os.geteuid())
        hint = READ_ONLY_HINT if problem.errno == errno.EROFS else WRITER_HINT
        return (
            fail(
                "cache",
                f"{path} is not writable by {me}: {problem.strerror or problem} ({owner})",
                hint.format(path=path),
            ),
            readable,
        )
    if info.st_mode & stat.S_IWOTH:
        return (
            warn(
                "cache",
                f"{path} is writable by every user ({owner})",
                f"anyone could roll trust back to older signed metadata: `chmod 0750 {path}`",
            ),
            readable,
        )
    if os.geteuid() == 0 and info.st_uid != 0:
        return _root_in_anothers_cache(path, info, owner), readable
    return ok("cache", f"{path} is a writable directory ({owner})"), readable


def _write_probe(path: Path) -> OSError | None:
    """Create and remove a scratch file: the only proof of writability (ACLs, read-only
    mounts and full disks are not in the mode bits)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=path)
    except OSError as exc:
        return exc
    try:
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return exc
    return None


def _user(uid: int) -> str:
    """A uid by name for the hint (the number when it has none, or on a system without pwd)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _group(gid: int) -> str:
    """A gid by name for the hint (the number when it has none, or on a system without grp)."""
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


# ---- anchor, trust, freshness, pins, last sync ------------------------------------------


def check_anchor(store: Store, config: Path) -> tuple[Check, bool]:
    """The anchor is there and has the digest `init` recorded in the config."""
    import hashlib

    try:
        data = store.read_anchor()
    except StellaError as error:
        return fail("anchor", error.message, error.hint), False
    except OSError as exc:
        return (
            fail(
                "anchor",
                f"{store.anchor_path}: {exc.strerror or exc}",
                "readers need the stella-trust group (the cache directory is 0750)",
            ),
            False,
        )
    digest = hashlib.sha256(data).hexdigest()
    if store.anchor_sha256 is None:
        return (
            warn(
                "anchor",
                f"{store.anchor_path} (sha256 {digest[:16]}…) is not pinned: the config records no "
                "anchor_sha256, so a replaced anchor would not be noticed",
                f"as root, re-run `trust init --force --root ROOT.json` to record it in {config}",
            ),
            True,
        )
    return ok("anchor", f"{store.anchor_path} matches anchor_sha256 {digest[:16]}… in {config}"), True


def check_trust(settings: TrustRepoSettings, store: Store, now: datetime) -> tuple[Check, TrustView | None]:
    """The current generation re-verifies from the anchor (as every read does)."""
    from stella_trust._internal.reader import load_view

    try:
        view = load_view(settings, store, now)
    except StellaError as error:
        return fail("trust", error.message, error.hint), None
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return (
            fail(
                "trust",
                f"cannot read the cache{where}: {exc.strerror or exc}",
                "readers need the stella-trust group (the cache directory is 0750)",
            ),
            None,
        )
    versions = ", ".join(f"{role} v{info.version}" for role, info in view.roles.items())
    return ok("trust", f"re-verified from the anchor: {versions}; {len(view.targets)} targets"), view


def check_freshness(view: TrustView, settings: TrustRepoSettings, now: datetime) -> Check:
    """Decision 3: fresh ok, grace warn, stale fail (from signed expiry dates only)."""
    f = view.freshness
    role = f.earliest_role
    if f.state == FreshnessState.FRESH:
        return ok(
            "freshness", f"fresh: {role} expires {iso(f.expires)} (in {human_duration(f.expires - now)})"
        )
    if f.state == FreshnessState.GRACE:
        return warn(
            "freshness",
            f"grace: {role} expired {iso(f.expires)} ({human_duration(now - f.expires)} ago); "
            f"stale at {iso(f.stale_after)} (in {human_duration(f.stale_after - now)})",
            "run `trust sync` (or import a fresh bundle); consumers refuse trust once it is stale",
        )
    return fail(
        "freshness",
        f"stale since {iso(f.stale_after)} ({role} expired {iso(f.expires)}, "
        f"grace {settings.freshness_threshold_days:g} days): consumers refuse it",
        "run `trust sync` (or import a fresh bundle on air-gapped hosts)",
    )


def check_pins(view: TrustView) -> Check:
    """Pinned targets the view lacks, told apart: retired by the repository (remove the pin) or not
    fetched yet (sync); either way a warning, since the rest of the trust is served."""
    if not view.missing_pins:
        return ok("pins", "every pinned target is cached")
    retired = [p for p in view.missing_pins if p in view.retired_pins]
    absent = [p for p in view.missing_pins if p not in view.retired_pins]
    parts = []
    if retired:
        parts.append(f"retired by the repository: {', '.join(retired)}")
    if absent:
        parts.append(f"not cached yet: {', '.join(absent)}")
    return warn(
        "pins",
        "pinned targets missing (" + "; ".join(parts) + ")",
        "remove retired pins from pinned_targets; run `trust sync` for the others",
    )


def check_last_sync(settings: TrustRepoSettings, store: Store, now: datetime) -> Check:
    """What the last sync recorded (state.json: informational, never trust)."""
    try:
        state = store.read_state()
    except OSError as exc:
        return warn(
            "sync", f"cannot read {store.state_path}: {exc.strerror or exc}", _reader_hint(store.state_path)
        )
    except StellaError as exc:  # an edited rollback floor
        return fail("sync", exc.message, exc.hint)
    expects_sync = settings.tuf_url is not None and settings.network_allowed
    if state.last_error:
        streak = f" ({state.consecutive_failures} in a row)" if state.consecutive_failures > 1 else ""
        return warn(
            "sync",
            f"the last sync failed{streak}: {state.last_error}",
            "run `trust sync` for the error and its hint; cached trust is served while it is fresh",
        )
    last = parse_iso(state.last_sync)  # unsigned: a damaged time reads as none recorded
    if last is None:
        if expects_sync:
            return warn("sync", "no successful sync recorded", "run `trust sync`")
        return ok("sync", "no sync recorded (this host takes trust from bundles)")
    age = now - last
    overdue = 2 * timedelta(minutes=settings.refresh_interval_minutes) + OVERDUE_MARGIN
    ago = f"{human_duration(age)} ago" if age >= timedelta(0) else f"{human_duration(age)} in the future"
    if expects_sync and age > overdue:
        return warn(
            "sync",
            f"last successful sync {iso(last)} ({ago}); refresh interval "
            f"{settings.refresh_interval_minutes:g} minutes",
            AGENT_HINT,
        )
    return ok("sync", f"last successful sync {iso(last)} ({ago})")


# ---- the agent's metrics ----------------------------------------------------------------


def check_metrics(settings: TrustRepoSettings, now: datetime) -> Check:
    """The agent's node_exporter textfile, if configured: present, recent, no failure streak."""
    path = settings.metrics_path
    if path is None:
        return ok("metrics", "metrics_path not configured, skipped")
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return warn("metrics", f"{path} does not exist: the agent has not written it", AGENT_HINT)
    except OSError as exc:
        return warn("metrics", f"{path}: {exc.strerror or exc}", _reader_hint(path))
    written = datetime.fromtimestamp(info.st_mtime, UTC)
    age = now - written
    overdue = 2 * timedelta(minutes=settings.refresh_interval_minutes) + OVERDUE_MARGIN
    if age > overdue:
        return warn(
            "metrics",
            f"{path} was last written {iso(written)} ({human_duration(age)} ago); "
            f"the agent rewrites it every {settings.refresh_interval_minutes:g} minutes",
            AGENT_HINT,
        )
    failures = _sample(text, "stella_trust_consecutive_failures")
    if failures:
        return warn(
            "metrics",
            f"{path}: the agent reports {failures:g} consecutive refresh failures",
            "see the agent's log: `journalctl -u stella-trust-agent -p warning`",
        )
    return ok("metrics", f"{path} written {human_duration(age)} ago")


def _sample(text: str, name: str) -> float | None:
    """An unlabelled sample's value from the agent's Prometheus text file; None when absent or not a
    number."""
    for line in text.splitlines():
        head, _, value = line.partition(" ")
        if head == name:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _root_in_anothers_cache(path: Path, info: os.stat_result, owner: str) -> Check:
    """Root's writers act as the cache owner (decision 17) where the owner can read this Python
    installation; said here, since the fallback keeps root's own (checked) writes."""
    as_owner = acts_as_owner(Owner(info.st_uid, info.st_gid))
    name = _user(info.st_uid)
    if as_owner:
        return ok("cache", f"{path} is a writable directory ({owner}); root writes it as {name}")
    return warn(
        "cache",
        f"{path} is owned by {name}, and root writes it as root: {name} cannot read this Python "
        f"installation ({sys.prefix})",
        f"install stella-trust where {name} can read it (as the agent's own install), or run "
        f"writers as that user (`sudo -u {name} trust ...`)",
    )
