"""One object per process, built on first use and rebuilt when the settings it was built from
change (tests switch backends and key prefixes with ``override_settings``).

The response cache's store and the metrics store are such objects: each picks Redis or memory
from the settings, holds connections, and must be replaced, never mutated, when those settings
move.

    store = ProcessWide(build_cache_store, {"REDIS_URL", "GATEWAY_STATE_PREFIX"})
    store.get()           # built once, then the same object
    store.replace(fake)   # tests inject one (the previous one is closed)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from django.core.signals import setting_changed

T = TypeVar("T")


class ProcessWide(Generic[T]):
    def __init__(self, build: Callable[[], T], settings_names: Iterable[str]) -> None:
        self._build = build
        self._settings_names = frozenset(settings_names)
        self._value: T | None = None
        self._lock = threading.Lock()
        # weak=False: the receiver is a bound method of an object that lives as long as its module.
        setting_changed.connect(self._on_setting_changed, weak=False)

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def replace(self, value: T | None) -> None:
        """Use ``value`` from now on (None: build anew on next use); the previous one is closed."""
        with self._lock:
            previous, self._value = self._value, value
        close = getattr(previous, "close", None)
        if close is not None and previous is not value:
            close()

    def _on_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in self._settings_names:
            self.replace(None)
