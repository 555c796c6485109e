"""Credentials in URLs are replaced wherever text leaves the config (decision 18)."""

from __future__ import annotations

from stella_trust._internal.redact import redact, redact_all


def test_userinfo_and_secret_query_values_are_hidden_and_nothing_else() -> None:
    text = (
        "Repository unreachable: HTTP 503 for https://ci:s3cr3t@mirror.example/tuf/metadata/timestamp.json"
        " (https://mirror.example/t?X-Amz-Signature=abc123&part=2&token=tok#frag)"
    )
    cleaned = redact(text)
    assert "s3cr3t" not in cleaned and "abc123" not in cleaned and "tok#" not in cleaned
    assert "https://***@mirror.example/tuf/metadata/timestamp.json" in cleaned
    assert "X-Amz-Signature=***&part=2&token=***#frag" in cleaned
    assert redact("no url, a=b and user@example.com") == "no url, a=b and user@example.com"
    assert redact("file:///media/usb/tuf") == "file:///media/usb/tuf"


def test_every_string_of_a_json_value_is_redacted() -> None:
    document = {"source": {"url": "http://u:p@h/"}, "list": ["http://x:y@z/", 3, None], "n": 1}
    assert redact_all(document) == {
        "source": {"url": "http://***@h/"},
        "list": ["http://***@z/", 3, None],
        "n": 1,
    }
