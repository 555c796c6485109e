"""A Sigstore bundle (or trusted root) as input: bounded before any parser sees it, and, when
it does not load, refused with the reason named.

The bounds are what keeps hostile input to one line: at most MAX_BUNDLE_BYTES and
MAX_JSON_DEPTH levels of nesting, so a deeply nested document is refused unparsed instead of
ending in a RecursionError inside a parser.
"""

from __future__ import annotations

import json
import re

from stella_trust._internal.sigstore.errors import BundleRefusedError, BundleVerificationError, classify

MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # real bundles are a few KiB; a larger one is refused unread
MAX_JSON_DEPTH = 64  # a real bundle or trusted root nests about 8 deep; parsers recurse per level
# A JSON string, escapes included (RFC 8259 §7): `"(?:[^"\\]|\\.)*"` with its loop unrolled
# (runs of plain bytes taken whole, not one alternation per byte): the same strings, matched
# 3-4x faster, which every verification pays twice (bundle and trusted root; issue 24).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)


def require_bounded_json(data: bytes, what: str) -> None:
    """At most MAX_BUNDLE_BYTES and MAX_JSON_DEPTH levels of arrays and objects, or one line
    (BundleRefusedError) before any parser recurses into it. Brackets inside strings are not
    counted; a document that is not JSON is left for the parser to name."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefusedError(f"{what} is {len(data)} bytes, above the {MAX_BUNDLE_BYTES}-byte limit")
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b'""', data)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > MAX_JSON_DEPTH:
            raise BundleRefusedError(
                f"{what} nests arrays and objects more than {MAX_JSON_DEPTH} deep (a Sigstore document "
                "nests about 8): refused unparsed"
            )


def refusal_for(bundle: bytes, exc: Exception) -> BundleRefusedError | BundleVerificationError:
    """Why a bundle did not load: named precisely on this (rare) path, so the happy path parses once."""
    try:
        document = json.loads(bundle)
    except (ValueError, UnicodeDecodeError) as json_exc:
        return BundleRefusedError(f"bundle is not JSON: {json_exc}")
    media_type = document.get("mediaType") if isinstance(document, dict) else None
    if media_type not in BUNDLE_MEDIA_TYPES:
        return BundleRefusedError(f"unknown bundle media type {media_type!r}")
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    from pydantic import ValidationError

    if "failed to load bundle" in message or isinstance(exc, ValidationError):
        return BundleRefusedError(f"malformed bundle: {' '.join(str(exc).split())[:300]}")
    if "certificate" in message and (document.get("verificationMaterial") or {}).get("publicKey"):
        return BundleVerificationError(
            "chain", "bundle is signed by a managed key, not a certificate; verify it with the public key"
        )
    return BundleVerificationError(classify(message), message)
