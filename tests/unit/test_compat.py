"""The private third-party attributes stella-trust relies on still exist (issue 22, item 7):
an upgrade that renames one fails here, in one place, not as an obscure verification error."""

from __future__ import annotations

from pathlib import Path

from stella_trust._internal import _compat_httpx, _compat_tuf
from stella_trust._internal.sigstore import _compat_sigstore
from stella_trust.demo.repository import DemoRepository

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"


def test_sigstore_python_still_has_every_private_attribute_we_use() -> None:
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier

    bundle = Bundle.from_json((STAGING / "bundles" / "staging-rekor-v2.txt.sigstore.json").read_bytes())
    root = TrustedRoot.from_file(str(STAGING / "trusted_root.json"))
    samples = {
        "Bundle": bundle,
        "TransparencyLogEntry": bundle.log_entry,
        "TrustedRoot": root,
        "Verifier": Verifier(trusted_root=root),
    }
    assert _compat_sigstore.missing(samples) == []


def test_httpx_still_lets_us_set_the_pools_network_backend() -> None:
    assert _compat_httpx.missing() == []


def test_python_tuf_still_has_a_reference_time_to_move(tmp_path: Path) -> None:
    from tuf.ngclient import Updater

    assert _compat_tuf.missing() == []
    demo = DemoRepository(tmp_path / "repository")
    updater = Updater(str(tmp_path), "http://unused.invalid/metadata/", bootstrap=demo.repo.root_bytes(1))
    assert _compat_tuf.ignore_expiry(updater)
    assert updater._trusted_set.reference_time.year == 1
