"""What the host's environment says about reaching a server: the proxy for a URL (the
standard *_proxy variables, read once per change) and the TLS context (the system's trust or
a configured CA bundle, built once per file identity). One place, so `sync`, `doctor` and
`repo pull` reach a repository the same way.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from urllib import request as urllib_request

from stella_trust._internal.credentials import as_invoker
from stella_trust._internal.memo import VerificationMemo


def environment_proxy(scheme: str, host: str, proxies: dict[str, str]) -> str | None:
    """The proxy the environment names for a URL (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY).

    httpx ignores the environment's proxies once a client is given its own transport,
    so the choice is made here, with the standard library's reading of those variables."""
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib_request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


# The variables that can name a proxy for the schemes we fetch (urllib reads either case).
_PROXY_BASES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_PROXY_VARIABLES = (
    *(name for base in _PROXY_BASES for name in (base, base.upper())),
    "REQUEST_METHOD",  # urllib ignores HTTP_PROXY under CGI
)


def environment_proxies(memo: VerificationMemo) -> dict[str, str]:
    """urllib's reading of the proxy variables, read again only when one of them changed
    (it scans the whole environment, which an idle sync would otherwise pay for every time)."""
    key = tuple(os.environ.get(name) for name in _PROXY_VARIABLES)
    proxies = memo.proxies.get(key)
    if proxies is None:
        proxies = urllib_request.getproxies()
        memo.proxies.put(key, proxies)
    return dict(proxies)


def _identity(path: str | None) -> tuple[object, ...]:
    """What names a CA file for the TLS-context memo: its path and (device, inode, size, mtime_ns,
    ctime_ns), so a replaced or edited bundle builds a new context (decision 13's argument)."""
    if not path:
        return (None,)
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def tls_context(ca_bundle: Path | None, memo: VerificationMemo) -> ssl.SSLContext:
    """The verifying TLS context for `ca_bundle` (None: the default store, or SSL_CERT_FILE /
    SSL_CERT_DIR as httpx reads them), built once per memo (the agent's lives as long as the
    process) and CA-store identity.

    Loading a CA store costs more than an idle sync, and the agent syncs every few minutes.
    Certificate verification is the same context httpx would build (hostname checks and
    CERT_REQUIRED included); a changed bundle file or environment builds anew."""
    key = (
        _identity(str(ca_bundle) if ca_bundle else None),
        _identity(os.environ.get("SSL_CERT_FILE")),
        _identity(os.environ.get("SSL_CERT_DIR")),
    )
    context: ssl.SSLContext | None = memo.tls_contexts.get(key)
    if context is None:
        with as_invoker():  # a root-only CA file, read while root writes as the cache owner
            context = _new_tls_context(ca_bundle)
        memo.tls_contexts.put(key, context)
    return context


def _new_tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The context httpx would build for this CA store (see tls_context)."""
    import httpx

    if ca_bundle:  # httpx's own recommendation for a CA file (verify=<str> is deprecated)
        return ssl.create_default_context(cafile=str(ca_bundle))
    return httpx.create_ssl_context(verify=True, trust_env=True)
