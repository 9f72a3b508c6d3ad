"""Rate-limit algorithms, each one atomic step per request: a Lua script on Redis, a lock in memory.

Two algorithms, the same answer shape (``Decision``):
- token bucket: ``burst`` tokens, refilled at ``rate_per_second``; a request takes one token;
- sliding window: at most ``limit`` requests in any ``window_seconds`` — exact, a log of
  admitted timestamps (a sorted set in Redis, a deque in memory), not the fixed-bucket or
  two-bucket-weighted approximations, which admit up to twice the limit across a bucket edge.

Redis scripts read the server's ``TIME`` so every process agrees on the clock; a clock may be
injected instead (tests move time without sleeping, on either backend).

    >>> limiter = MemoryRateLimiter()
    >>> limiter.hit("ip:10.0.0.1", Limit.sliding_window(limit=3, window_seconds=10)).remaining
    2
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


from gateway_project.state import StateStoreUnavailable
from gateway_project.state.redis_store import REDIS_UNAVAILABLE_ERRORS, connect_redis

TOKEN_BUCKET = "token_bucket"
SLIDING_WINDOW = "sliding_window"

MICROSECONDS = 1_000_000
# Drop idle per-key state (full buckets, empty logs) every this many memory hits.
SWEEP_EVERY_HITS = 10_000


@dataclass(frozen=True, slots=True)
class Limit:
    """What one policy allows. ``limit`` is the window's count or the bucket's burst."""

    algorithm: str
    limit: int
    window_seconds: float = 0.0
    rate_per_second: float = 0.0

    @classmethod
    def sliding_window(cls, limit: int, window_seconds: float) -> Limit:
        return cls(SLIDING_WINDOW, limit, window_seconds=window_seconds)

    @classmethod
    def token_bucket(cls, rate_per_second: float, burst: int) -> Limit:
        return cls(TOKEN_BUCKET, burst, rate_per_second=rate_per_second)


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's verdict. Times are seconds from now.

    ``reset``: until the quota next grows (the oldest logged request leaves the window; the
    bucket is full again). ``retry_after``: until a denied request would be admitted (0 when
    allowed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float

    @property
    def reset_header(self) -> int:
        return max(0, math.ceil(self.reset))

    @property
    def retry_after_header(self) -> int:
        return max(1, math.ceil(self.retry_after))


class RateLimiter(Protocol):
    backend_name: str

    def hit(self, key: str, limit: Limit) -> Decision:
        """Count one request against ``key``; raises StateStoreUnavailable when Redis is down."""


def _token_bucket_step(tokens: float, elapsed: float, limit: Limit) -> tuple[bool, float, Decision]:
    """The pure arithmetic both backends share (the Lua script mirrors it line for line)."""
    tokens = min(float(limit.limit), tokens + max(0.0, elapsed) * limit.rate_per_second)
    allowed = tokens >= 1.0
    if allowed:
        tokens -= 1.0
    retry_after = 0.0 if allowed else (1.0 - tokens) / limit.rate_per_second
    reset = (limit.limit - tokens) / limit.rate_per_second
    return allowed, tokens, Decision(allowed, limit.limit, int(tokens), reset, retry_after)


class MemoryRateLimiter:
    """Per-process state under one lock: the embedded shape, and the fail-open fallback."""

    backend_name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[str, deque[float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._hits = 0

    def hit(self, key: str, limit: Limit) -> Decision:
        with self._lock:
            now = self._clock()
            self._hits += 1
            if self._hits % SWEEP_EVERY_HITS == 0:
                self._sweep(now)
            if limit.algorithm == TOKEN_BUCKET:
                return self._take_token(key, limit, now)
            return self._log_request(key, limit, now)

    def _take_token(self, key: str, limit: Limit, now: float) -> Decision:
        tokens, at = self._buckets.get(key, (float(limit.limit), now))
        _allowed, tokens, decision = _token_bucket_step(tokens, now - at, limit)
        self._buckets[key] = (tokens, now)
        return decision

    def _log_request(self, key: str, limit: Limit, now: float) -> Decision:
        log = self._logs.setdefault(key, deque())
        # A request at t counts while t > now - window: gone exactly one window later.
        while log and log[0] <= now - limit.window_seconds:
            log.popleft()
        allowed = len(log) < limit.limit
        if allowed:
            log.append(now)
        return _sliding_decision(allowed, limit, len(log), log, now)

    def _sweep(self, now: float) -> None:
        self._logs = {k: log for k, log in self._logs.items() if log and log[-1] > now - 3600}
        self._buckets = {k: state for k, state in self._buckets.items() if state[1] > now - 3600}


def _sliding_decision(allowed: bool, limit: Limit, count: int, log: deque[float], now: float) -> Decision:
    if not log:
        return Decision(allowed, limit.limit, limit.limit, 0.0, 0.0)
    # The request whose expiry frees the next slot (index 0 unless the limit was lowered).
    freeing = log[max(0, count - limit.limit)] if not allowed else log[0]
    until_free = freeing + limit.window_seconds - now
    return Decision(allowed, limit.limit, max(0, limit.limit - count), until_free, 0.0 if allowed else until_free)


# KEYS[1] log key. ARGV: limit, window (µs), now (µs, '' = Redis TIME), a unique member suffix.
SLIDING_WINDOW_SCRIPT = """
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, string.format('%.0f', now) .. ':' .. ARGV[4])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
local index = 0
if allowed == 0 then index = math.max(0, count - limit) end
local freeing = redis.call('ZRANGE', KEYS[1], index, index, 'WITHSCORES')
local until_free = 0
if freeing[2] then until_free = tonumber(freeing[2]) + window - now end
return {allowed, count, tostring(until_free)}
"""

# KEYS[1] bucket hash. ARGV: burst, rate (tokens/s), now (µs, '' = Redis TIME).
TOKEN_BUCKET_SCRIPT = """
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
local elapsed = math.max(0, now - at) / 1000000
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
return {allowed, string.format('%.17g', tokens)}
"""


class RedisRateLimiter:
    """Shared by every gateway process; each hit is one script run, so none can interleave."""

    backend_name = "redis"

    def __init__(self, url: str, prefix: str = "", clock: Callable[[], float] | None = None) -> None:
        self._prefix = prefix
        self._clock = clock
        self._client = connect_redis(url)
        self._sliding_window = self._client.register_script(SLIDING_WINDOW_SCRIPT)
        self._token_bucket = self._client.register_script(TOKEN_BUCKET_SCRIPT)

    def hit(self, key: str, limit: Limit) -> Decision:
        now = "" if self._clock is None else str(int(self._clock() * MICROSECONDS))
        if limit.algorithm == TOKEN_BUCKET:
            return self._take_token(key, limit, now)
        return self._log_request(key, limit, now)

    def _take_token(self, key: str, limit: Limit, now: str) -> Decision:
        allowed, tokens_text = self._run(self._token_bucket, key, [limit.limit, repr(limit.rate_per_second), now])
        tokens = float(tokens_text)
        retry_after = 0.0 if allowed else (1.0 - tokens) / limit.rate_per_second
        reset = (limit.limit - tokens) / limit.rate_per_second
        return Decision(bool(allowed), limit.limit, int(tokens), reset, retry_after)

    def _log_request(self, key: str, limit: Limit, now: str) -> Decision:
        window_us = int(limit.window_seconds * MICROSECONDS)
        allowed, count, until_free_us = self._run(
            self._sliding_window, key, [limit.limit, window_us, now, uuid.uuid4().hex]
        )
        until_free = float(until_free_us) / MICROSECONDS
        remaining = max(0, limit.limit - int(count))
        return Decision(bool(allowed), limit.limit, remaining, until_free, 0.0 if allowed else until_free)

    def _run(self, script: Any, key: str, args: list[Any]) -> Any:
        try:
            return script(keys=[self._prefix + key], args=args)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            raise StateStoreUnavailable(f"redis: {exc}") from exc

    def close(self) -> None:
        self._client.close()
