"""The one private httpx/httpcore attribute stella-trust uses (a network backend per pool).

Every request's deadline is enforced below httpx, in the httpcore network backend its
connection pool dials through (net/deadline.py). httpx gives a transport no public option
for the backend, so it is set on the pool the transport built (`HTTPTransport._pool`,
httpcore's `ConnectionPool._network_backend`) before any connection exists. Replacing the
transport with one built on httpcore's public `ConnectionPool(network_backend=...)` would
mean re-implementing httpx's private request/response and exception mapping: two private
APIs for one. `missing()` lets a unit test fail loudly on an upgrade that renames these;
`use_backend` refuses to run without them (fetching without deadlines must never happen
silently).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpcore
    import httpx


def missing() -> list[str]:
    """What this module relies on that the installed httpx/httpcore lacks."""
    import httpx

    transport = httpx.HTTPTransport()
    try:
        pool = getattr(transport, "_pool", None)
        if pool is None:
            return ["httpx.HTTPTransport()._pool"]
        return [] if hasattr(pool, "_network_backend") else ["httpcore.ConnectionPool()._network_backend"]
    finally:
        transport.close()


def use_backend(transport: httpx.BaseTransport, backend: httpcore.NetworkBackend) -> None:
    """Make an httpx transport open its connections through `backend` (see the module)."""
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError(
            f"cannot enforce download deadlines on {type(transport).__name__}: "
            "the installed httpx/httpcore changed their internals"
        )
    pool._network_backend = backend
