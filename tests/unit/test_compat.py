"""The private third-party attributes stella-trust relies on still exist (issue 22, item 7):
an upgrade that renames one fails here, in one place, not as an obscure verification error."""

from __future__ import annotations

import ast
from pathlib import Path

import stella_trust._internal.net as net
from stella_trust._internal import _compat_tuf
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


def test_the_http_stack_uses_httpx_and_httpcore_through_public_names_only() -> None:
    """No adapter is needed for httpx: net/ touches no underscore attribute but its own
    (`self._...`), and reaches none by name through getattr/setattr/hasattr."""
    private: list[str] = []
    for path in sorted(Path(net.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                private.append(f"{path.name}:{node.lineno} .{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and any(isinstance(a, ast.Constant) and str(a.value).startswith("_") for a in node.args)
            ):
                private.append(f"{path.name}:{node.lineno} {node.func.id}")
    assert private == []


def test_python_tuf_still_has_a_reference_time_to_move(tmp_path: Path) -> None:
    from tuf.ngclient import Updater

    assert _compat_tuf.missing() == []
    demo = DemoRepository(tmp_path / "repository")
    updater = Updater(str(tmp_path), "http://unused.invalid/metadata/", bootstrap=demo.repo.root_bytes(1))
    assert _compat_tuf.ignore_expiry(updater)
    assert updater._trusted_set.reference_time.year == 1
