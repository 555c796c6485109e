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
from stella_trust._internal.settings import TrustRepoSettings, load_settings, write_section
from stella_trust._internal.store import Store
from stella_trust._internal.tuf.errors import translate
from stella_trust._internal.tuf.offline import verify_root_chain
from stella_trust._internal.tuf.updater import make_fetcher, repository_urls

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Anchor:
    data: bytes
    version: int
    how: str  # file / sha256 / tofu

    @property
    def sha256(self) -> str:
        return fingerprint(self.data)


def _check_root(data: bytes, origin: str) -> int:
    try:
        root, _ = verify_root_chain(data, Path("/nonexistent-root-history"))
    except errors.StellaError as exc:
        raise errors.TrustAnchorError(f"{origin} is not a valid root: {exc.message}") from exc
    return root.signed.version


def _download_first_root(settings: TrustRepoSettings) -> bytes:
    assert settings.tuf_url is not None
    metadata_url, _ = repository_urls(settings.tuf_url)
    url = f"{metadata_url}1.root.json"
    with make_fetcher(settings) as fetcher:
        try:
            return fetcher.download_bytes(url, settings.metadata_limits.root)
        except Exception as exc:
            raise translate(exc, url) from exc


def obtain_anchor(
    settings: TrustRepoSettings,
    *,
    root_file: Path | None,
    root_sha256: str | None,
    trust_on_first_use: bool,
) -> Anchor:
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
    settings.require_network("cannot download the root", hint="use --root FILE")
    data = _download_first_root(settings)
    if root_sha256 is not None:
        expected = root_sha256.strip().lower()
        if not HEX64.match(expected):
            raise errors.UsageError("--root-sha256 must be 64 hexadecimal characters")
        if fingerprint(data) != expected:
            raise errors.TrustAnchorError(
                f"downloaded 1.root.json has SHA-256 {fingerprint(data)}, expected {expected}",
                hint="the repository serves a different root than the one you pinned: do not trust it",
            )
        return Anchor(data, _check_root(data, "1.root.json"), "sha256")
    return Anchor(data, _check_root(data, "1.root.json"), "tofu")


def initialise(
    config_path: Path,
    flags: dict[str, Any],
    *,
    root_file: Path | None,
    root_sha256: str | None,
    trust_on_first_use: bool,
    force: bool,
) -> tuple[TrustRepoSettings, Anchor]:
    """Validate the new settings, obtain the anchor, then record both (config, cache)."""
    settings = load_settings(config_path, flags)
    if not settings.tuf_url:
        raise errors.UsageError("--tuf-url is required (or set it in the config)")
    anchor = obtain_anchor(
        settings, root_file=root_file, root_sha256=root_sha256, trust_on_first_use=trust_on_first_use
    )
    store = Store(settings.local_cache_path)
    with store.lock(settings.lock_timeout_seconds):
        if store.is_initialised() and store.read_anchor() != anchor.data:
            if not force:
                raise errors.TrustAnchorError(
                    f"cache {store.root} already trusts a different root "
                    f"(sha256 {fingerprint(store.read_anchor())})",
                    hint="pass --force to replace the trust anchor and drop the cached trust",
                )
            store.reset()
        store.write_anchor(anchor.data)
    recorded = {key: value for key, value in flags.items() if value is not None}
    recorded["enabled"] = True
    for key, value in list(recorded.items()):
        if isinstance(value, Path):
            recorded[key] = str(value.resolve())
    write_section(config_path, recorded)
    return settings, anchor
