"""The config version: how every gateway process learns that routes or services changed.

A save or delete of a routing model bumps a revision row in the same database transaction,
marks this process's snapshot stale at once, and, after commit, increments the version in
the state store. Each serving process runs a watcher thread that polls the shared version
(Redis when configured, else the revision row, which a management command in another process
can also bump) and marks its snapshot stale when it moves. The hot path only reads a flag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import close_old_connections, transaction
from django.db.models import F

from gateway_project.state import StateStoreUnavailable, get_state_store
from routing.conf import routing_settings

logger = logging.getLogger(__name__)

CONFIG_VERSION_KEY = "config:version"

_stale_listeners: list[threading.Event] = []

T = TypeVar("T")


def register_stale_flag(flag: threading.Event) -> None:
    """A cache of configuration registers the flag it checks on every request."""
    _stale_listeners.append(flag)


class ConfigCache(Generic[T]):
    """A value built from configuration rows (routing snapshot, rate-limit policies, API keys):
    built on first use, reused while nothing changes, rebuilt after any config change.

    The hot path only reads a flag; the database is read when the value is rebuilt.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._rebuild_lock = threading.Lock()
        self._stale = threading.Event()
        register_stale_flag(self._stale)

    def get(self) -> T:
        value = self._value
        if value is not None and not self._stale.is_set():
            return value
        with self._rebuild_lock:
            if self._value is None or self._stale.is_set():
                # Clear first: a change landing during the rebuild sets it again.
                self._stale.clear()
                self._value = self._build()
            return self._value


def mark_local_snapshot_stale() -> None:
    for flag in _stale_listeners:
        flag.set()


def bump_config_version() -> None:
    """Record a config change: revision row now, this process now, others after commit."""
    from routing.models import ConfigRevision

    updated = ConfigRevision.objects.filter(pk=1).update(revision=F("revision") + 1)
    if not updated:
        ConfigRevision.objects.get_or_create(pk=1, defaults={"revision": 1})
    mark_local_snapshot_stale()
    transaction.on_commit(_publish_to_state_store)


def _publish_to_state_store() -> None:
    try:
        get_state_store().incr(CONFIG_VERSION_KEY)
    except StateStoreUnavailable:
        logger.warning("config version not published: state store unavailable")


def read_shared_version() -> str:
    """The version every process agrees on: Redis when shared, else the revision row."""
    store = get_state_store()
    if store.backend_name != "memory":
        return store.get(CONFIG_VERSION_KEY) or "0"
    from routing.models import ConfigRevision

    revision = ConfigRevision.objects.filter(pk=1).values_list("revision", flat=True).first()
    return str(revision or 0)


class ConfigWatcher(threading.Thread):
    """Polls the shared version and marks the local snapshot stale when it changes."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="gateway-config-watcher", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()
        self._last_seen: str | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.check_once()

    def check_once(self) -> None:
        try:
            version = read_shared_version()
        except Exception:  # a watcher that dies silently would freeze config: log and go on
            logger.exception("config watcher could not read the config version")
            close_old_connections()
            return
        if self._last_seen is not None and version != self._last_seen:
            mark_local_snapshot_stale()
        self._last_seen = version


_watcher: ConfigWatcher | None = None
_watcher_lock = threading.Lock()


def start_config_watcher() -> ConfigWatcher | None:
    """Start this process's watcher once (called by the WSGI entry point)."""
    global _watcher
    interval = routing_settings.config_poll_interval
    if interval <= 0:
        return None
    with _watcher_lock:
        if _watcher is None:
            _watcher = ConfigWatcher(interval)
            _watcher.check_once()
            _watcher.start()
    return _watcher
