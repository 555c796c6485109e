"""The depth bound before any parser (decision 5, bundleinput.py): the unrolled JSON-string
pattern (issue 24: 3-4x faster) removes exactly the strings the textbook pattern removes, so
the bound counts the same brackets, on real documents and on adversarial byte soup."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from stella_trust._internal.sigstore.bundleinput import _JSON_STRING, MAX_JSON_DEPTH, require_bounded_json
from stella_trust._internal.sigstore.errors import BundleRefusedError

STAGING = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore" / "staging"
TEXTBOOK = re.compile(rb'"(?:[^"\\]|\\.)*"')  # RFC 8259 §7, one alternation per byte


def _documents() -> list[bytes]:
    return [(STAGING / "trusted_root.json").read_bytes()] + [
        path.read_bytes() for path in sorted((STAGING / "bundles").glob("*.json"))
    ]


def test_unrolled_pattern_removes_the_same_strings_as_the_textbook_one() -> None:
    documents = _documents()
    assert len(documents) > 5
    rng = random.Random(24)
    alphabet = b'"\\[]{}a\n '
    soup = [bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(5000)]
    for data in documents + soup:
        assert _JSON_STRING.sub(b'""', data) == TEXTBOOK.sub(b'""', data), data[:60]


def test_brackets_inside_strings_do_not_count_and_outside_they_do() -> None:
    deep_in_string = b'{"a": "' + b"[" * (MAX_JSON_DEPTH * 4) + b'\\"' + b"{" * 100 + b'"}'
    require_bounded_json(deep_in_string, "bundle")  # one level of real nesting
    nested = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(BundleRefusedError, match="more than 64 deep"):
        require_bounded_json(nested, "bundle")
    escaped_quote = b'{"k": "\\"' + b"]" * 3 + b'"' + b", " + b"[" * (MAX_JSON_DEPTH + 1) + b"}"
    with pytest.raises(BundleRefusedError, match="refused unparsed"):
        require_bounded_json(escaped_quote, "bundle")
    for data in _documents():
        require_bounded_json(data, "bundle")
