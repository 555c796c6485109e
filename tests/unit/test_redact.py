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


def test_a_password_holding_an_at_sign_is_hidden_whole() -> None:
    """httpx takes the last '@' as the separator, so an unencoded '@' in a password works for
    fetching; the part after the first '@' must not be shown either."""
    shown = redact("sync failed: http://mirroruser:p@ssMARK@127.0.0.1:18080/metadata/1.root.json")
    assert "MARK" not in shown and "ss" not in shown.split("@")[0]
    assert shown == "sync failed: http://***@127.0.0.1:18080/metadata/1.root.json"


def test_query_names_that_hold_a_secret_word_are_hidden() -> None:
    url = (
        "https://m.example/tuf?private_token=A1&client_secret=B2&api-key=C3&X-Amz-Credential=D4"
        "&access_key=E5&pass=F6&jwt=G7&bearer=H8&page=2"
    )
    shown = redact(url)
    assert not any(secret in shown for secret in ("A1", "B2", "C3", "D4", "E5", "F6", "G7", "H8")), shown
    assert shown.endswith("&page=2")


def test_percent_encoded_secret_names_are_decoded_before_they_are_judged() -> None:
    """A server decodes `%74oken` to `token` (RFC 3986 2.1) and `+` to a space: the name as
    written must not hide the secret (the reviewers' `?%74oken=abc`, `?client%5Fsecret=x`)."""
    cases = {
        "https://m.example/t?%74oken=abc1": "https://m.example/t?%74oken=***",
        "https://m.example/t?client%5Fsecret=xyz2": "https://m.example/t?client%5Fsecret=***",
        "https://m.example/t?page=1&%6B%65%79=q3": "https://m.example/t?page=1&%6B%65%79=***",
        "https://m.example/t?X%2DAmz%2DSignature=s4#f": "https://m.example/t?X%2DAmz%2DSignature=***#f",
        "https://m.example/t?api+key=k5": "https://m.example/t?api+key=***",
        "https://m.example/t?%2574oken=d6": "https://m.example/t?%2574oken=***",  # encoded twice
    }
    for url, expected in cases.items():
        assert redact(url) == expected, url


def test_non_secret_names_stay_readable_encoded_or_not() -> None:
    url = "https://m.example/t?page=2&%70age=3&region%5Fname=eu&q=a%20b&sort=+name"
    assert redact(url) == url
    assert redact("see ?lang=en and ?%6Cang=de") == "see ?lang=en and ?%6Cang=de"


def test_a_secret_after_a_semicolon_inside_a_plain_value_is_still_hidden() -> None:
    """Names are found before values are read: a non-secret value never swallows the
    `;token=` that follows it."""
    assert redact("https://m.example/t?a=1;%74oken=z7&b=2") == "https://m.example/t?a=1;%74oken=***&b=2"


def test_skipping_a_pattern_whose_literal_characters_are_absent_changes_no_answer() -> None:
    """`redact` tries the userinfo pattern only on text holding '@' and '://', and the query pattern
    only on text holding '=' and one of '?&;' (issue 24: the status document's URLs and keys then
    compile neither). Both patterns are applied unconditionally here, as before the shortcut, to
    texts built from every character either pattern reads (and a few secrets)."""
    import random
    import re

    from stella_trust._internal import redact as module

    def unconditional(text: str) -> str:
        text = re.sub(module._USERINFO, lambda m: f"{m.group('scheme')}{module.HIDDEN}@", text)
        return module._hide_secret_values(text)

    pieces = [
        "https://",
        "file://",
        "u:p",
        "@",
        "?",
        "&",
        ";",
        "=",
        "token",
        "%74oken",
        "sig",
        "a",
        "/",
        "#",
        " ",
        '"',
    ]
    rng = random.Random(24)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(4000)]
    texts += ["https://ci:s3cr3t@m.example/t?sig=1", "a;token=2", "x@y=z", "https://m.example/?a=1"]
    changed = 0
    for text in texts:
        expected = unconditional(text)
        assert redact(text) == expected, text
        changed += expected != text
    assert changed > 100  # the texts exercise both patterns, not only the shortcut


def test_a_name_holding_no_secret_word_is_judged_as_the_patterns_would() -> None:
    """`_secret_word` answers an ASCII name holding no word of the patterns without them (issue 24);
    every answer is compared here with the patterns themselves, on names built from the words'
    pieces, cases, separators and non-ASCII letters that IGNORECASE folds (Kelvin sign, long s)."""
    import random
    import re

    from stella_trust._internal import redact as module

    def by_the_patterns(name: str) -> bool:
        found = re.search(module._SECRET_WORDS, name, re.IGNORECASE) or re.fullmatch(
            module._SHORT_NAMES, name, re.IGNORECASE
        )
        return found is not None

    pieces = ["to", "ken", "api", "access", "_", "-", " ", "\t", "\x1c", "KEY", "k", "ey", "sig"]
    pieces += ["s", "v", "e", "p", "co", "de", "ver", "sion", "jwt", "\u212a", "\u017f", "i", "\u0131"]
    pieces += ["AUTH", "x"]
    rng = random.Random(24)
    names = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))) for _ in range(20000)]
    names += ["version", "api-key", "API\x1fKEY", "\u212aey"]
    secret = 0
    for name in names:
        expected = by_the_patterns(name)
        assert module._secret_word(name) == expected, repr(name)
        secret += expected
    assert 1000 < secret < len(names) - 1000  # both answers are exercised
