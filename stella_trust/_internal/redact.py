"""Secrets never leave the config (docs/design.md, decision 18).

A mirror URL may carry credentials: `https://user:token@mirror.example/tuf`, or a signed
query (`?X-Amz-Signature=...`, `?token=...`). httpx needs them to fetch, and the config holds
them; nothing else may: not the CLI's output or JSON, not a log line, not `state.json` (group
readable), not a metrics file, not a bundle's manifest (which travels to other sites). Every
such boundary passes its text through `redact`, which replaces the userinfo of any URL and the
value of any query parameter whose name (percent-decoded) looks like a secret with `***`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

HIDDEN = "***"
# scheme://userinfo@ — userinfo is everything up to the LAST '@' before any '/', '?', '#' (a
# password may hold an unencoded '@', and httpx then still takes the last one as the separator)
_USERINFO = r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"'<>]+)@"
# a query parameter is a secret if its name holds one of these words anywhere (private_token,
# client_secret, api-key, X-Amz-Credential, ...), or is one of the short names signed URLs use
_SECRET_WORDS = (
    r"token|secret|pass|pwd|auth|credential|signature|api[_\-\s]?key|access[_\-\s]?key"
    r"|session|private|jwt|bearer"
)
_SHORT_NAMES = "key|sig|sv|se|sp|skoid|sktid|code"
# a query parameter's name as it is written (percent-encoded or not); its value runs to the next
# '&', '#', space or quote (a ';' inside a secret value is hidden with it)
_QUERY_NAME = r"[?&;](?P<name>[^=&;?#\s\"'<>]+)="
_VALUE_END = r"[&#\s\"']"
_DECODE_ROUNDS = 4  # `%2574oken` is `%74oken` after one decoding, `token` after two
# The patterns are kept as text: `re` compiles each the first time a text needs it (and keeps it),
# so a process that only ever redacts plain URLs never compiles the query ones, and a pattern is
# not even tried on a text that lacks one of its literal characters (issue 24).


def redact(text: str) -> str:
    """`text` with every URL's userinfo and every secret-looking query value replaced."""
    if "://" not in text and "=" not in text:
        return text  # the common case costs one scan
    if "@" in text and "://" in text:  # both are literals of _USERINFO: without them it cannot match
        text = re.sub(_USERINFO, lambda m: f"{m.group('scheme')}{HIDDEN}@", text)
    if "=" not in text or not any(mark in text for mark in "?&;"):
        return text  # _QUERY_NAME needs a '?', '&' or ';' and a '='
    return _hide_secret_values(text)


def secret_name(name: str) -> bool:
    """Whether a query parameter named `name` (as written in a URL) carries a secret. The name
    is percent-decoded first (RFC 3986 section 2.1; '+' as a space, as form encoding has it),
    repeatedly: a server decodes `%74oken` to `token`, so `?%74oken=abc` is a token too, and
    hiding the value of a doubly encoded name costs nothing."""
    seen = name
    for _ in range(_DECODE_ROUNDS):
        if _secret_word(seen):
            return True
        decoded = unquote_plus(seen)
        if decoded == seen:
            return False
        seen = decoded
    return _secret_word(seen)


# Every word of _SECRET_WORDS holds one of these (the `api key` and `access key` forms hold "key"),
# and every short name is one: an ASCII name (where IGNORECASE is `lower()`) holding none of them
# and not a short name cannot match, and is answered without compiling either pattern (issue 24:
# `;version=` in a media type is the one query-like name a status document holds).
_WORD_CORES: tuple[str, ...] = ("token", "secret", "pass", "pwd", "auth", "credential", "signature", "key")
_WORD_CORES += ("session", "private", "jwt", "bearer")
_SHORT = frozenset(_SHORT_NAMES.split("|"))


def _secret_word(name: str) -> bool:
    """Whether `name` holds a secret word or is one of the short names."""
    if name.isascii():
        lowered = name.lower()
        if lowered not in _SHORT and not any(core in lowered for core in _WORD_CORES):
            return False
    found = re.search(_SECRET_WORDS, name, re.IGNORECASE) or re.fullmatch(_SHORT_NAMES, name, re.IGNORECASE)
    return found is not None


def _hide_secret_values(text: str) -> str:
    """Every query name is found first (names never overlap; a non-secret value is never
    consumed, so `?a=1;token=2` still finds `token`), then each secret one's value is hidden."""
    parts: list[str] = []
    shown = 0  # text[:shown] is decided
    for match in re.finditer(_QUERY_NAME, text):
        if match.start() < shown or not secret_name(match.group("name")):
            continue  # inside a value already hidden, or a name that holds no secret
        end = re.compile(_VALUE_END).search(text, match.end())
        value_end = end.start() if end else len(text)
        parts += [text[shown : match.end()], HIDDEN]
        shown = value_end
    parts.append(text[shown:])
    return "".join(parts)


def redact_all(value: Any) -> Any:
    """`redact` applied to every string in a JSON-shaped value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(item) for item in value]
    return value
