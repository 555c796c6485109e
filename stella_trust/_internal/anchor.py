"""The trust anchor: the one root a host trusts because an operator said so.

docs/design.md, decision 1: nothing is trusted because the network said so. A root comes from
a file the operator carried in, or is downloaded and must match a digest the
operator carried in; trust-on-first-use exists for labs and says loudly what it did.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stella_trust import errors
from stella_trust._internal.configfile import write_section
from stella_trust._internal.net.mirrors import MirrorRun
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.tuf.errors import translate
from stella_trust._internal.tuf.offline import verify_root_chain
from stella_trust._internal.tuf.updater import make_fetcher, repository_urls

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fingerprint(data: bytes) -> str:
    """SHA-256 of a root's bytes, hex: what the config pins and operators compare (decision 1)."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Anchor:
    """The root a host is about to trust, and how it was obtained (`file`, `sha256` or `tofu`) for
    `init`'s report."""

    data: bytes
    version: int
    how: str  # file / sha256 / tofu

    @property
    def sha256(self) -> str:
        """The digest `init` records in the config; every later read compares the cache's anchor
        with it."""
        return fingerprint(self.data)


def _check_root(data: bytes, origin: str) -> int:
    """A would-be anchor must parse as a root and be signed by a threshold of its own root keys,
    distinct keys counted (TUF spec 5.3.4's second half; there is no predecessor to check)."""
    try:
        root, _ = verify_root_chain(data, Path("/nonexistent-root-history"))
    except errors.StellaError as exc:
        raise errors.TrustAnchorError(f"{origin} is not a valid root: {exc.message}") from exc
    return root.signed.version


def _download_root(settings: TrustRepoSettings, expected: str | None) -> tuple[bytes, str]:
    """`1.root.json`, or (with a pinned digest) the first `N.root.json` whose bytes have it,
    through the mirrors in order (a mirror that does not answer is passed over, net/mirrors.py).

    Pinning any version's digest is what operators publish (`trust repo roots`, or a
    Sigstore root's digest); the bytes are only hashed until one matches, so roots that do
    not parse by today's rules (public-good's v1, v3, v4) are simply passed over.
    """
    from tuf.api.exceptions import DownloadHTTPError

    assert settings.tuf_url is not None
    metadata_url, _ = repository_urls(settings.tuf_url)
    seen: list[str] = []
    with make_fetcher(settings) as transport:
        fetcher = next(MirrorRun.of(settings, transport).attempts())  # failover per request
        for version in range(1, settings.max_root_rotations + 2):
            url = f"{metadata_url}{version}.root.json"
            try:
                data = fetcher.download_bytes(url, settings.metadata_limits.root)
            except DownloadHTTPError as exc:
                if expected is not None and version > 1 and exc.status_code in (403, 404):
                    raise _not_served(expected, seen) from exc
                raise translate(exc, url) from exc
            except Exception as exc:
                raise translate(exc, url) from exc
            if expected is None or fingerprint(data) == expected:
                return data, f"{version}.root.json"
            seen.append(f"{version}.root.json {fingerprint(data)[:16]}…")
    raise _not_served(expected or "", seen)


def _not_served(expected: str, seen: list[str]) -> errors.TrustAnchorError:
    """The pinned root is not among the ones the repository serves: name what it serves."""
    served = "; ".join(seen[:3]) + (f"; … ({len(seen)} roots)" if len(seen) > 3 else "")
    return errors.TrustAnchorError(
        f"the repository serves no root with the pinned SHA-256 (expected {expected}); it serves {served}",
        hint="the repository serves a different root than the one you pinned: do not trust it",
    )


def obtain_anchor(
    settings: TrustRepoSettings,
    *,
    root_file: Path | None,
    root_sha256: str | None,
    trust_on_first_use: bool,
) -> Anchor:
    """Exactly one way to the anchor (decision 1): `--root FILE`, `--root-sha256` (the download must
    match), or trust-on-first-use for labs. None given is refused, never a silent
    trust-on-first-use."""
    chosen = sum(x is not None and x is not False for x in (root_file, root_sha256, trust_on_first_use))
    if chosen == 0:
        raise errors.UsageError(
            "refusing to trust a repository without a trust anchor",
            hint="pass --root FILE or --root-sha256 HEX (or, for labs only, --trust-on-first-use)",
        )
    if chosen > 1:
        raise errors.UsageError("choose one of --root, --root-sha256, --trust-on-first-use")
    if root_file is not None:
        try:
            data = root_file.read_bytes()
        except OSError as exc:
            raise errors.TrustAnchorError(f"cannot read root file {root_file}: {exc.strerror}") from exc
        return Anchor(data, _check_root(data, str(root_file)), "file")
    expected = None
    if root_sha256 is not None:
        expected = root_sha256.strip().lower()
        if not HEX64.match(expected):
            raise errors.UsageError("--root-sha256 must be 64 hexadecimal characters")
    settings.require_network("cannot download the root", hint="use --root FILE")
    data, name = _download_root(settings, expected)
    return Anchor(data, _check_root(data, name), "tofu" if expected is None else "sha256")


def initialise(
    config_path: Path,
    flags: dict[str, Any],
    *,
    root_file: Path | None,
    root_sha256: str | None,
    trust_on_first_use: bool,
    force: bool,
    instance: str | None = None,
) -> tuple[TrustRepoSettings, Anchor]:
    """Validate the new settings, obtain the anchor, then record both (config, cache).
    `instance` names a named instance (decision 23): its fields go under `instances.<NAME>`, its
    cache is its own, and no other instance's config or cache is touched."""
    named = instance is not None and instance != "default"
    settings = load_settings(config_path, flags, instance=instance, adding=True)
    if not settings.tuf_url:
        if root_file is None:
            raise errors.UsageError(
                "--tuf-url is required, except on a bundle-only host given --root FILE",
                hint="air-gapped: `trust init --root root.json --offline`, then `trust import BUNDLE`",
            )
        flags = {**flags, "offline_mode": True}  # no repository to reach: bundles only
        settings = settings.model_copy(update={"offline_mode": True})
    anchor = obtain_anchor(
        settings, root_file=root_file, root_sha256=root_sha256, trust_on_first_use=trust_on_first_use
    )
    store = Store(settings.local_cache_path)
    with store.lock(settings.lock_timeout_seconds):
        if store.is_initialised() and store.read_anchor() != anchor.data and not force:
            raise errors.TrustAnchorError(
                f"cache {store.root} already trusts a different root "
                f"(sha256 {fingerprint(store.read_anchor())})",
                hint="pass --force to replace the trust anchor and drop the cached trust",
            )
        if force:  # a fresh start: cached trust and its state (the rollback floor) go too
            store.reset()
        store.write_anchor(anchor.data)
    recorded = {key: value for key, value in flags.items() if value is not None}
    recorded["enabled"] = True
    recorded["anchor_sha256"] = anchor.sha256  # every read compares the cache's anchor with it
    if named:  # its own cache, recorded like `--cache-dir` is for the default instance
        recorded["local_cache_path"] = settings.local_cache_path
    for key, value in list(recorded.items()):
        if isinstance(value, Path):
            recorded[key] = str(value.resolve())
    write_section(config_path, recorded, instance)
    return settings.model_copy(update={"anchor_sha256": anchor.sha256}), anchor


def record_sources(
    config_path: Path, settings: TrustRepoSettings, sources: tuple[str, ...], instance: str | None = None
) -> None:
    """After the first sync, `trust_source: auto` becomes what the repository publishes,
    so a later change of the repository's layout is an error, not a silent switch."""
    if settings.trust_source == "auto" and sources:
        write_section(config_path, {"trust_source": "both" if len(sources) > 1 else sources[0]}, instance)
