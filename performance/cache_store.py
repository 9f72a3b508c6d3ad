"""Where cached answers live: one small protocol, two backends.

An entry is a string value under (route id, digest), with its own time to live. Beyond
``max_entries`` the least recently used entries are evicted; an entry that outlived its TTL is
gone (removed when touched, and by the periodic cleanup), and dropping it is not an eviction.
Entries are grouped by route so one route's answers can be purged at once.

- ``MemoryCacheStore``: an ``OrderedDict`` in LRU order under one lock, with an injectable
  clock; per process, like the embedded state store.
- ``RedisCacheStore``: shared by every process. Value keys carry their TTL (``PX``); a sorted
  set orders entries by last use (a shared counter, so the order is exact across processes),
  another by expiry time (Redis's own clock), and a set per route lists its entries. Every
  operation is one Lua script, so concurrent processes never see half an entry.

Both raise ``StateStoreUnavailable`` when their backend cannot be reached (only Redis can fail).

    >>> store = MemoryCacheStore(max_entries=2)
    >>> store.put(7, "digest", '{"answer": 1}', ttl=300)
    0
    >>> store.get_first(7, ["other", "digest"]).value
    '{"answer": 1}'
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway_project.state.base import StateStoreUnavailable
from gateway_project.state.redis_store import REDIS_UNAVAILABLE_ERRORS, connect_redis

# Under the gateway's state prefix, so one Redis serves several gateways (and test runs) apart.
KEY_NAMESPACE = "rcache:"
# Expired entries one write clears on its way (the periodic cleanup takes the rest).
EXPIRED_DROPPED_PER_WRITE = 100
# Expired entries one cleanup script removes; the cleanup repeats until none are left.
CLEANUP_BATCH = 1000


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A live entry: its value and how long it still lives (the cache derives its age from it)."""

    value: str
    ttl_left: float


class ResponseCacheStore(Protocol):
    backend_name: str

    def get_first(self, route_id: int, digests: Sequence[str]) -> StoredAnswer | None:
        """The first live entry among ``digests``, marked as just used; None when none is live."""

    def put(self, route_id: int, digest: str, value: str, ttl: float) -> int:
        """Store (or replace) an entry for ``ttl`` seconds; return how many live entries were
        evicted to stay within the maximum."""

    def purge_route(self, route_id: int) -> int:
        """Remove every entry of one route; return how many live ones there were."""

    def remove_expired(self) -> int:
        """Remove every entry past its TTL (the periodic cleanup); return how many."""

    def size(self) -> int:
        """How many live entries the store holds."""


# --- memory -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    value: str
    expires_at: float


class MemoryCacheStore:
    backend_name = "memory"

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Least recently used first: a hit moves its entry to the end, eviction pops the front.
        self._entries: OrderedDict[tuple[int, str], _Entry] = OrderedDict()

    def get_first(self, route_id: int, digests: Sequence[str]) -> StoredAnswer | None:
        now = self._clock()
        with self._lock:
            for digest in digests:
                key = (route_id, digest)
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if entry.expires_at <= now:
                    del self._entries[key]
                    continue
                self._entries.move_to_end(key)
                return StoredAnswer(entry.value, entry.expires_at - now)
        return None

    def put(self, route_id: int, digest: str, value: str, ttl: float) -> int:
        now = self._clock()
        key = (route_id, digest)
        with self._lock:
            self._entries[key] = _Entry(value, now + ttl)
            self._entries.move_to_end(key)
            return self._evict_beyond_maximum(now)

    def purge_route(self, route_id: int) -> int:
        now = self._clock()
        with self._lock:
            keys = [key for key in self._entries if key[0] == route_id]
            live = sum(1 for key in keys if self._entries[key].expires_at > now)
            for key in keys:
                del self._entries[key]
        return live

    def remove_expired(self) -> int:
        now = self._clock()
        with self._lock:
            expired = [key for key, entry in self._entries.items() if entry.expires_at <= now]
            for key in expired:
                del self._entries[key]
        return len(expired)

    def size(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.expires_at > now)

    def _evict_beyond_maximum(self, now: float) -> int:
        """Pop least recently used entries until within the maximum (the lock is held)."""
        evicted = 0
        while len(self._entries) > self._max_entries:
            _, entry = self._entries.popitem(last=False)
            if entry.expires_at > now:
                evicted += 1
        return evicted


# --- Redis --------------------------------------------------------------------------------------

# Shared by the scripts: Redis's clock in milliseconds, and removing one entry everywhere
# (returns 1 when its value was still live). Members are "<route id>:<digest>".
_LUA_HELPERS = """
local base = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(member)
  local route_id = string.match(member, '^(%d+):')
  redis.call('ZREM', base .. 'lru', member)
  redis.call('ZREM', base .. 'exp', member)
  redis.call('SREM', base .. 'r:' .. route_id, member)
  return redis.call('DEL', base .. 'v:' .. member)
end
local function drop_expired(limit)
  local expired = redis.call('ZRANGEBYSCORE', base .. 'exp', '-inf', now_ms(), 'LIMIT', 0, limit)
  for _, member in ipairs(expired) do drop(member) end
  return #expired
end
"""

# ARGV: base, member... -> {value, ms left} of the first live member (touched), or nil.
_GET_FIRST = _LUA_HELPERS + """
for i = 2, #ARGV do
  local value_key = base .. 'v:' .. ARGV[i]
  local value = redis.call('GET', value_key)
  if value then
    redis.call('ZADD', base .. 'lru', redis.call('INCR', base .. 'tick'), ARGV[i])
    return {value, redis.call('PTTL', value_key)}
  end
end
return false
"""

# ARGV: base, member, route id, value, ttl ms, max entries, expired to drop -> live entries evicted.
_PUT = _LUA_HELPERS + """
local member, ttl_ms = ARGV[2], tonumber(ARGV[5])
drop_expired(tonumber(ARGV[7]))
redis.call('SET', base .. 'v:' .. member, ARGV[4], 'PX', ttl_ms)
redis.call('ZADD', base .. 'lru', redis.call('INCR', base .. 'tick'), member)
redis.call('ZADD', base .. 'exp', now_ms() + ttl_ms, member)
redis.call('SADD', base .. 'r:' .. ARGV[3], member)
local evicted = 0
local over = redis.call('ZCARD', base .. 'lru') - tonumber(ARGV[6])
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', base .. 'lru', 0, over - 1)) do
    evicted = evicted + drop(old)
  end
end
return evicted
"""

# ARGV: base, route id -> live entries removed.
_PURGE_ROUTE = _LUA_HELPERS + """
local route_set = base .. 'r:' .. ARGV[2]
local live = 0
for _, member in ipairs(redis.call('SMEMBERS', route_set)) do
  live = live + drop(member)
end
redis.call('DEL', route_set)
return live
"""

# ARGV: base, limit -> entries removed.
_REMOVE_EXPIRED = _LUA_HELPERS + """
return drop_expired(tonumber(ARGV[2]))
"""

# ARGV: base -> live entries.
_SIZE = _LUA_HELPERS + """
return redis.call('ZCOUNT', base .. 'exp', '(' .. now_ms(), '+inf')
"""


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisCacheStore:
    backend_name = "redis"

    def __init__(self, url: str, prefix: str, max_entries: int) -> None:
        self._base = prefix + KEY_NAMESPACE
        self._max_entries = max_entries
        self._client = connect_redis(url)
        self._get_first = self._client.register_script(_GET_FIRST)
        self._put = self._client.register_script(_PUT)
        self._purge_route = self._client.register_script(_PURGE_ROUTE)
        self._remove_expired = self._client.register_script(_REMOVE_EXPIRED)
        self._size = self._client.register_script(_SIZE)

    def get_first(self, route_id: int, digests: Sequence[str]) -> StoredAnswer | None:
        members = [f"{route_id}:{digest}" for digest in digests]
        found = self._run(self._get_first, self._base, *members)
        if not found:
            return None
        value, ms_left = found
        return StoredAnswer(value, max(0, int(ms_left)) / 1000.0)

    def put(self, route_id: int, digest: str, value: str, ttl: float) -> int:
        member = f"{route_id}:{digest}"
        args = (self._base, member, route_id, value, _milliseconds(ttl), self._max_entries, EXPIRED_DROPPED_PER_WRITE)
        return int(self._run(self._put, *args))

    def purge_route(self, route_id: int) -> int:
        return int(self._run(self._purge_route, self._base, route_id))

    def remove_expired(self) -> int:
        total = 0
        while True:
            removed = int(self._run(self._remove_expired, self._base, CLEANUP_BATCH))
            total += removed
            if removed < CLEANUP_BATCH:
                return total

    def size(self) -> int:
        return int(self._run(self._size, self._base))

    def close(self) -> None:
        self._client.close()

    def _run(self, script: Any, *args: Any) -> Any:
        try:
            return script(keys=[], args=list(args))
        except REDIS_UNAVAILABLE_ERRORS as exc:
            raise StateStoreUnavailable(f"redis: {exc}") from exc
