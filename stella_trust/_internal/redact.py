"""Secrets never leave the config (docs/design.md, decision 18).

A mirror URL may carry credentials: `https://user:token@mirror.example/tuf`, or a signed
query (`?X-Amz-Signature=...`, `?token=...`). httpx needs them to fetch, and the config holds
them; nothing else may: not the CLI's output or JSON, not a log line, not `state.json` (group
readable), not a metrics file, not a bundle's manifest (which travels to other sites). Every
such boundary passes its text through `redact`, which replaces the userinfo of any URL and the
value of any query parameter whose name looks like a secret with `***`.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"
# scheme://userinfo@ — userinfo is everything up to the LAST '@' before any '/', '?', '#' (a
# password may hold an unencoded '@', and httpx then still takes the last one as the separator)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"'<>]+)@")
# a query parameter is a secret if its name holds one of these words anywhere (private_token,
# client_secret, api-key, X-Amz-Credential, ...), or is one of the short names signed URLs use
_SECRET_WORDS = (
    r"token|secret|pass|pwd|auth|credential|signature|api[_\-]?key|access[_\-]?key"
    r"|session|private|jwt|bearer"
)
_SHORT_NAMES = "key|sig|sv|se|sp|skoid|sktid|code"
_SECRET_NAME = rf"[\w.\-]*(?:{_SECRET_WORDS})[\w.\-]*|(?:{_SHORT_NAMES})"
_SECRET_QUERY = re.compile(rf"(?P<lead>[?&;](?:{_SECRET_NAME})=)(?P<value>[^&#\s\"']*)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every URL's userinfo and every secret-looking query value replaced."""
    if "://" not in text and "=" not in text:
        return text  # the common case costs one scan
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{HIDDEN}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('lead')}{HIDDEN}", text)


def redact_all(value: Any) -> Any:
    """`redact` applied to every string in a JSON-shaped value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(item) for item in value]
    return value
