"""In-process state: a dict with expiry times, guarded by one lock.

State is per process, so the embedded default runs one gateway process with many threads;
several processes need Redis (a start-up check says so).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Expired keys are dropped lazily on access; a full sweep runs every this many writes so
# keys nobody reads again cannot pile up.
SWEEP_EVERY_WRITES = 10_000


class MemoryStateStore:
    backend_name = "memory"

    def __init__(self, prefix: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self._prefix = prefix
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}
        self._expires_at: dict[str, float] = {}
        self._writes = 0

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live_value(self._prefix + key)

    def get_many(self, keys: list[str]) -> list[str | None]:
        with self._lock:
            return [self._live_value(self._prefix + key) for key in keys]

    def ttl(self, key: str) -> float | None:
        full_key = self._prefix + key
        with self._lock:
            if self._live_value(full_key) is None:
                return None
            expires_at = self._expires_at.get(full_key)
            return None if expires_at is None else expires_at - self._clock()

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._lock:
            self._store(self._prefix + key, value, ttl)

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        full_key = self._prefix + key
        with self._lock:
            if self._live_value(full_key) is not None:
                return False
            self._store(full_key, value, ttl)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(self._prefix + key)

    def delete_if_equals(self, key: str, value: str) -> bool:
        full_key = self._prefix + key
        with self._lock:
            if self._live_value(full_key) != value:
                return False
            self._drop(full_key)
            return True

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        full_key = self._prefix + key
        with self._lock:
            current = self._live_value(full_key)
            if current is None:
                new_value = amount
                self._store(full_key, str(new_value), ttl)
            else:
                new_value = int(current) + amount
                self._values[full_key] = str(new_value)
            return new_value

    def expire(self, key: str, ttl: float) -> bool:
        full_key = self._prefix + key
        with self._lock:
            if self._live_value(full_key) is None:
                return False
            self._expires_at[full_key] = self._clock() + ttl
            return True

    def ping(self) -> None:
        return None

    # The helpers below expect the lock to be held.

    def _live_value(self, full_key: str) -> str | None:
        expires_at = self._expires_at.get(full_key)
        if expires_at is not None and expires_at <= self._clock():
            self._drop(full_key)
            return None
        return self._values.get(full_key)

    def _store(self, full_key: str, value: str, ttl: float | None) -> None:
        self._values[full_key] = value
        if ttl is None:
            self._expires_at.pop(full_key, None)
        else:
            self._expires_at[full_key] = self._clock() + ttl
        self._writes += 1
        if self._writes % SWEEP_EVERY_WRITES == 0:
            self._sweep_expired()

    def _drop(self, full_key: str) -> None:
        self._values.pop(full_key, None)
        self._expires_at.pop(full_key, None)

    def _sweep_expired(self) -> None:
        now = self._clock()
        for full_key in [k for k, at in self._expires_at.items() if at <= now]:
            self._drop(full_key)
