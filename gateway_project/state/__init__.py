"""The state store: shared, fast-changing gateway state behind one small interface.

Two backends: in-process memory (the embedded default: one process, many threads) and Redis
(when ``REDIS_URL`` is set: many processes on many machines behave as one gateway). Every
read-modify-write operation is atomic in both, so counters, locks and leases hold exactly.

    >>> store = get_state_store()
    >>> store.incr("hits", ttl=60)
    1
"""

from __future__ import annotations

import threading

from django.conf import settings

from gateway_project.state.base import StateStore, StateStoreUnavailable
from gateway_project.state.memory import MemoryStateStore

__all__ = ["StateStore", "StateStoreUnavailable", "get_state_store", "reset_state_store"]

_store: StateStore | None = None
_store_lock = threading.Lock()


def build_state_store() -> StateStore:
    """Build the backend that the settings ask for."""
    if settings.REDIS_URL:
        from gateway_project.state.redis_store import RedisStateStore

        return RedisStateStore(settings.REDIS_URL, prefix=settings.GATEWAY_STATE_PREFIX)
    return MemoryStateStore(prefix=settings.GATEWAY_STATE_PREFIX)


def get_state_store() -> StateStore:
    """The process-wide store, built once on first use."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                _store = build_state_store()
    return _store


def reset_state_store() -> None:
    """Forget the process-wide store (tests switch backends and prefixes)."""
    global _store
    with _store_lock:
        _store = None
