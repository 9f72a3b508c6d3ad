"""Where every process's metrics meet: one small protocol, two backends.

Two kinds of data (names in ``layout.py``):
- integer hashes that flushes add to (``write``) and readers read whole or by field;
- one gauge entry per process (memory, CPU, in-flight), replaced at every flush, with a short
  time to live so a process that died drops out of the list by itself.

Backends, chosen like the state store's (``get_metrics_store``):
- ``MemoryMetricsStore``: dicts under one lock with an injectable clock; the embedded shape
  (one process, nothing to share).
- ``RedisMetricsStore``: shared by every process, under the gateway's state prefix. A flush is
  one MULTI/EXEC pipeline (HINCRBY per field, PEXPIRE per hash, the gauge entry): one round trip
  per process and interval, and an interval lands whole or not at all. Reads are pipelined.
The state-store protocol has no hashes or batches, hence this module beside it, as the
response cache has (``performance/cache_store.py``).

Both raise ``StateStoreUnavailable`` when their backend cannot be reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from gateway_project.state.base import StateStoreUnavailable
from gateway_project.state.process_wide import ProcessWide
from gateway_project.state.redis_store import REDIS_UNAVAILABLE_ERRORS, connect_redis

KEY_NAMESPACE = "metrics:"
PROCESS_INDEX = "procs"
# The index of processes outlives its members' entries; dead members are pruned when read.
PROCESS_INDEX_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class CounterAdd:
    """Add ``fields`` to the hash ``name``, which then lives ``ttl`` more seconds."""

    name: str
    fields: Mapping[str, int]
    ttl: float


@dataclass(frozen=True, slots=True)
class GaugeSet:
    """Replace one process's gauge entry (a JSON document) for ``ttl`` seconds."""

    process: str
    value: str
    ttl: float


class MetricsStore(Protocol):
    backend_name: str

    def write(self, counters: Sequence[CounterAdd], gauges: GaugeSet | None = None) -> None:
        """Apply every addition and the gauge entry together (one round trip)."""

    def read_counters(self, names: Sequence[str], fields: Sequence[str] | None = None) -> list[dict[str, int]]:
        """Each named hash (only ``fields`` of it, when given; missing ones left out), in order."""

    def read_gauges(self) -> dict[str, str]:
        """The gauge entry of every process whose entry is still alive, by process."""


# --- memory -------------------------------------------------------------------------------------


class MemoryMetricsStore:
    backend_name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hashes: dict[str, dict[str, int]] = {}
        self._expires_at: dict[str, float] = {}
        self._gauges: dict[str, tuple[str, float]] = {}

    def write(self, counters: Sequence[CounterAdd], gauges: GaugeSet | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            for counter in counters:
                stored = self._hashes.setdefault(counter.name, {})
                for name, value in counter.fields.items():
                    stored[name] = stored.get(name, 0) + value
                self._expires_at[counter.name] = now + counter.ttl
            if gauges is not None:
                self._gauges[gauges.process] = (gauges.value, now + gauges.ttl)

    def read_counters(self, names: Sequence[str], fields: Sequence[str] | None = None) -> list[dict[str, int]]:
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            stored = [self._hashes.get(name, {}) for name in names]
            if fields is None:
                return [dict(values) for values in stored]
            return [{name: values[name] for name in fields if name in values} for values in stored]

    def read_gauges(self) -> dict[str, str]:
        now = self._clock()
        with self._lock:
            return {process: value for process, (value, expires_at) in self._gauges.items() if expires_at > now}

    def _drop_expired(self, now: float) -> None:
        for name in [name for name, at in self._expires_at.items() if at <= now]:
            del self._hashes[name], self._expires_at[name]
        for process in [process for process, (_, at) in self._gauges.items() if at <= now]:
            del self._gauges[process]


# --- redis --------------------------------------------------------------------------------------


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisMetricsStore:
    backend_name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._base = prefix + KEY_NAMESPACE
        self._client = connect_redis(url)

    def write(self, counters: Sequence[CounterAdd], gauges: GaugeSet | None = None) -> None:
        pipe = self._client.pipeline(transaction=True)
        for counter in counters:
            key = self._base + counter.name
            for name, value in counter.fields.items():
                pipe.hincrby(key, name, value)
            pipe.pexpire(key, _milliseconds(counter.ttl))
        if gauges is not None:
            index = self._base + PROCESS_INDEX
            pipe.set(self._process_key(gauges.process), gauges.value, px=_milliseconds(gauges.ttl))
            pipe.sadd(index, gauges.process)
            pipe.pexpire(index, _milliseconds(PROCESS_INDEX_TTL_SECONDS))
        self._run(pipe.execute)

    def read_counters(self, names: Sequence[str], fields: Sequence[str] | None = None) -> list[dict[str, int]]:
        if not names:
            return []
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            if fields is None:
                pipe.hgetall(self._base + name)
            else:
                pipe.hmget(self._base + name, list(fields))
        replies = self._run(pipe.execute)
        if fields is None:
            return [{field: int(value) for field, value in reply.items()} for reply in replies]
        return [{field: int(value) for field, value in zip(fields, reply) if value is not None} for reply in replies]

    def read_gauges(self) -> dict[str, str]:
        index = self._base + PROCESS_INDEX
        processes = sorted(self._run(self._client.smembers, index))
        if not processes:
            return {}
        values = self._run(self._client.mget, [self._process_key(process) for process in processes])
        gone = [process for process, value in zip(processes, values) if value is None]
        if gone:
            self._run(self._client.srem, index, *gone)
        return {process: value for process, value in zip(processes, values) if value is not None}

    def close(self) -> None:
        self._client.close()

    def _process_key(self, process: str) -> str:
        return f"{self._base}proc:{process}"

    def _run(self, operation: Any, *args: Any) -> Any:
        try:
            return operation(*args)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            raise StateStoreUnavailable(f"redis: {exc}") from exc


# --- the process's store: built once, rebuilt only when its settings change (tests) -------------

def build_metrics_store() -> MetricsStore:
    """Redis when the gateway shares state through it, else this process's memory."""
    if settings.REDIS_URL:
        return RedisMetricsStore(settings.REDIS_URL, prefix=settings.GATEWAY_STATE_PREFIX)
    return MemoryMetricsStore()


_store: ProcessWide[MetricsStore] = ProcessWide(build_metrics_store, {"REDIS_URL", "GATEWAY_STATE_PREFIX"})


def get_metrics_store() -> MetricsStore:
    return _store.get()


def use_metrics_store(store: MetricsStore | None) -> None:
    """Replace the process's store (tests inject one with a fake clock); None rebuilds on next use."""
    _store.replace(store)
