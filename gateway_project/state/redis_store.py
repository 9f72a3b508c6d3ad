"""Redis state: shared by every gateway process; compound operations are Lua scripts.

One connection pool per process (redis-py's own), short socket timeouts so a stalled Redis
turns into ``StateStoreUnavailable`` quickly instead of hanging request threads.
"""

from __future__ import annotations

from typing import Any

import redis

from gateway_project.state.base import StateStoreUnavailable

# INCRBY, and give the key its TTL only when this call created it (a counter that comes back
# to the amount, or a permanent key, must not get a new TTL).
INCR_WITH_TTL = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# Compare-and-delete: only the holder of a lock may release it.
DELETE_IF_EQUALS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

SOCKET_TIMEOUT_SECONDS = 2.0


# What "cannot reach Redis" looks like; anything else (INCR on text) is a bug in the caller.
REDIS_UNAVAILABLE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def connect_redis(url: str) -> redis.Redis:
    """A client (with its own connection pool) whose calls fail fast when Redis stalls."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


def _milliseconds(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, int(ttl * 1000))


class RedisStateStore:
    backend_name = "redis"

    def __init__(self, url: str, prefix: str = "") -> None:
        self._prefix = prefix
        self._client = connect_redis(url)
        self._incr_with_ttl = self._client.register_script(INCR_WITH_TTL)
        self._delete_if_equals = self._client.register_script(DELETE_IF_EQUALS)

    def get(self, key: str) -> str | None:
        return self._call(self._client.get, self._prefix + key)

    def get_many(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        return list(self._call(self._client.mget, [self._prefix + key for key in keys]))

    def ttl(self, key: str) -> float | None:
        remaining_ms = int(self._call(self._client.pttl, self._prefix + key))
        return None if remaining_ms < 0 else remaining_ms / 1000.0

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._call(self._client.set, self._prefix + key, value, px=_milliseconds(ttl))

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        stored = self._call(self._client.set, self._prefix + key, value, px=_milliseconds(ttl), nx=True)
        return bool(stored)

    def delete(self, key: str) -> None:
        self._call(self._client.delete, self._prefix + key)

    def delete_if_equals(self, key: str, value: str) -> bool:
        return bool(self._call(self._delete_if_equals, keys=[self._prefix + key], args=[value]))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ttl_ms = _milliseconds(ttl)
        args = [amount, "" if ttl_ms is None else ttl_ms]
        return int(self._call(self._incr_with_ttl, keys=[self._prefix + key], args=args))

    def expire(self, key: str, ttl: float) -> bool:
        return bool(self._call(self._client.pexpire, self._prefix + key, _milliseconds(ttl)))

    def ping(self) -> None:
        self._call(self._client.ping)

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(*args, **kwargs)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            # Only "cannot reach Redis" is unavailability; a data error (INCR on text) is a bug
            # in the caller and surfaces as itself.
            raise StateStoreUnavailable(f"redis: {exc}") from exc
