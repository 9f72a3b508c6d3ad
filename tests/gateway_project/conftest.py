"""Fixtures for the state-store contract: both backends, a fake clock, and real Redis with cleanup."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from django.test import override_settings

from gateway_project.state import reset_state_store
from gateway_project.state.memory import MemoryStateStore
from gateway_project.state.redis_store import RedisStateStore

# Redis really runs here in every CI shape; the scale-out shape also exports it as REDIS_URL.
REDIS_TEST_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
# Nothing listens on port 1, so connecting is refused at once.
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"
# How long past its TTL a Redis key may still read as present before a test calls it a failure
# (Redis checks expiry on every read, so this only absorbs clock granularity and scheduling).
EXPIRY_DEADLINE_SECONDS = 2.0


def unique_prefix() -> str:
    """A key prefix no other test (or earlier run) uses."""
    return f"gwtest:{uuid.uuid4().hex}:"


def delete_redis_keys(prefix: str) -> None:
    """Remove every Redis key under ``prefix``."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextmanager
def redis_url_setting(url: str) -> Iterator[None]:
    """Run with settings.REDIS_URL = url and a freshly built process-wide store; restore after."""
    with override_settings(REDIS_URL=url):
        reset_state_store()
        try:
            yield
        finally:
            reset_state_store()


class FakeClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """One backend under test: builds stores and lets time pass in the backend's own way."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.clock = FakeClock()
        self.prefixes: list[str] = []
        # Memory runs on the fake clock, so any TTL is fine. Redis uses real time: short enough to keep
        # the suite quick, long enough that a read right after a write never races the TTL on a busy CI box.
        self.short_ttl = 10.0 if name == "memory" else 0.5
        self.long_ttl = 3_600.0

    def make_store(self, prefix: str | None = None) -> Any:
        """A fresh store on this backend; Redis keys under its prefix are removed at teardown."""
        prefix = prefix or unique_prefix()
        if self.name == "memory":
            return MemoryStateStore(prefix=prefix, clock=self.clock)
        self.prefixes.append(prefix)
        return RedisStateStore(REDIS_TEST_URL, prefix=prefix)

    def let_time_pass(self, seconds: float) -> None:
        """Advance the fake clock (memory) or really wait (Redis) at least ``seconds``."""
        if self.name == "memory":
            self.clock.advance(seconds)
        else:
            time.sleep(seconds)

    def wait_until_gone(self, store: Any, key: str, ttl: float) -> bool:
        """Let ``ttl`` run out; True once the key reads as missing (Redis: polled, bounded)."""
        if self.name == "memory":
            self.clock.advance(ttl)
            return store.get(key) is None
        deadline = time.monotonic() + ttl + EXPIRY_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            if store.get(key) is None:
                return True
            time.sleep(0.01)
        return store.get(key) is None

    def cleanup(self) -> None:
        for prefix in self.prefixes:
            delete_redis_keys(prefix)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A raw client to look behind the store's back (prefixes, TTLs)."""
    client = redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    yield client
    client.close()
