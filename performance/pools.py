"""Upstream connection pools: one urllib3 pool per target origin, shared by all threads.

urllib3's PoolManager keys pools by (scheme, host, port), so every target origin gets one
pool, created on first use and reused by every later request. ``block=False`` lets a burst
open extra connections rather than queue; only ``maxsize`` of them are kept afterwards.
"""

from __future__ import annotations

import threading

import urllib3

from performance.conf import performance_settings

_manager: urllib3.PoolManager | None = None
_manager_lock = threading.Lock()


def _build_manager() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        num_pools=performance_settings.pool_num_pools,
        maxsize=performance_settings.pool_maxsize,
        block=False,
        retries=False,
    )


def upstream_pool(scheme: str, host: str, port: int) -> urllib3.HTTPConnectionPool:
    """The pool for one upstream origin."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = _build_manager()
    return _manager.connection_from_host(host, port=port, scheme=scheme)


def close_all_pools() -> None:
    """Close every pooled connection (tests, shutdown)."""
    global _manager
    with _manager_lock:
        if _manager is not None:
            _manager.clear()
        _manager = None


# An unread rest up to this size is read so the connection can be reused; anything longer (or
# an endless stream) costs more than a new connection, so the connection is closed instead.
DISCARD_READ_LIMIT = 64 * 1024


def release(response: urllib3.BaseHTTPResponse, *, complete: bool) -> None:
    """Give a response's connection back to its pool; only a fully read one can be reused."""
    if not complete:
        response.close()
    response.release_conn()


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Drop an answer nobody will read, keeping the connection when the rest is short."""
    length = response.headers.get("Content-Length", "")
    complete = False
    try:
        if length.isdigit() and int(length) <= DISCARD_READ_LIMIT:
            response.read()
            complete = True
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # unreadable: the connection is simply not reused
    finally:
        release(response, complete=complete)
