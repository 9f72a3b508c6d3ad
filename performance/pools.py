"""Upstream connection pools: one bounded urllib3 pool per target origin, shared by all threads.

urllib3's PoolManager keys pools by (scheme, host, port); ours hands out pools that promise:
- **a maximum**: at most ``GATEWAY_POOL_MAXSIZE`` connections to one origin, in use or idle. A
  request that finds them all in use waits for one to come back, at most
  ``GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS`` (5 s), then gets ``PoolExhausted`` (503 with
  Retry-After) instead of hanging. It is the gateway's own limit, so forwarding does not count it
  against the target's circuit breaker or health;
- **growth and shrink with demand**: connections open on first need; an idle one unused for
  ``GATEWAY_POOL_IDLE_TIMEOUT_SECONDS`` (5 min) is closed instead of reused, except that closing
  for idleness leaves ``GATEWAY_POOL_MIN_IDLE`` (default 0) of the most recently used idle
  connections open. Nothing is opened in advance: a minimum that warmed connections at start-up
  would hold sockets to every target, used or not;
- **validation**: an idle connection the upstream has closed (its socket reads EOF) is never
  reused: checked when taken, as urllib3 does, and by the sweeper below;
- **statistics**: ``pool_stats()`` (in use, idle, opened, closed, waits, acquire timeouts) for
  the metrics endpoint and the dashboard.

Why the maximum defaults to the thread count: every open event stream holds one upstream
connection for its whole life (docs/performance.md), so a smaller pool would make ordinary calls
wait behind streams. With the default, the process's in-flight cap (``GATEWAY_MAX_IN_FLIGHT``,
threads minus a reserve) runs out before any pool can, and 200 open streams to one upstream
leave room for calls.

Where validation runs: pools belong to the process that uses them, so a job in the worker could
not reach them (in the scale-out shape the worker is another process). Expiry is therefore done
lazily when a connection is taken, plus one small sweeper thread per process that has pools
(started with the first pool, every ``GATEWAY_POOL_VALIDATION_INTERVAL_SECONDS``), which closes
what nobody takes any more: after a burst, the connections beyond the usual load.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import urllib3
from django.core.signals import setting_changed
from django.dispatch import receiver
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ClosedPoolError, EmptyPoolError

from gateway_project.errors import GatewayError
from performance.conf import performance_settings

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

RETRY_AFTER_HEADER = "Retry-After"
POOL_EXHAUSTED_DETAIL = "Every connection to the upstream of {service} is in use; try again shortly"
# The connections are held by requests in progress, most of which end within a second.
POOL_EXHAUSTED_RETRY_AFTER_SECONDS = 1
ACQUIRE_TIMED_OUT_MESSAGE = "No connection came back to the pool within the acquire timeout"


class PoolExhausted(GatewayError):
    """Raised when every connection to the upstream stayed in use for the whole acquire timeout."""

    status = 503
    code = "pool_exhausted"
    title = "Upstream connection pool exhausted"


def pool_exhausted(service_name: str) -> PoolExhausted:
    """The refusal for a request that waited the whole acquire timeout for a connection."""
    return PoolExhausted(
        POOL_EXHAUSTED_DETAIL.format(service=service_name),
        headers={RETRY_AFTER_HEADER: str(POOL_EXHAUSTED_RETRY_AFTER_SECONDS)},
    )


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """The limits every upstream pool of a process follows."""

    max_size: int
    min_idle: int
    idle_timeout: float
    acquire_timeout: float

    @classmethod
    def from_settings(cls) -> PoolPolicy:
        return cls(
            max_size=performance_settings.pool_maxsize,
            min_idle=performance_settings.pool_min_idle,
            idle_timeout=performance_settings.pool_idle_timeout_seconds,
            acquire_timeout=performance_settings.pool_acquire_timeout_seconds,
        )


class PoolStats(TypedDict):
    """One pool's figures. Totals count since the pool was made (a pool evicted from the
    manager and made again starts from zero, which metrics treat as a counter reset)."""

    origin: str
    max_size: int
    in_use: int  # connections taken by requests (a stream holds one until it closes)
    idle: int  # open connections waiting in the pool to be reused
    opened_total: int  # connections opened (TCP, and TLS when https)
    closed_total: int  # connections closed: idle timeout, dropped by the peer, unreusable answer
    waits_total: int  # requests that found every connection in use and had to wait
    timeouts_total: int  # of those, the ones that waited the whole acquire timeout (503)


class PoolCounters:
    """One pool's counters, updated by every server thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_use = 0
        self.opened_total = 0
        self.closed_total = 0
        self.waits_total = 0
        self.timeouts_total = 0

    def connection_taken(self) -> None:
        with self._lock:
            self.in_use += 1

    def connection_returned(self) -> None:
        with self._lock:
            self.in_use -= 1

    def connection_opened(self) -> None:
        with self._lock:
            self.opened_total += 1

    def connection_closed(self) -> None:
        with self._lock:
            self.closed_total += 1

    def acquire_waited(self) -> None:
        with self._lock:
            self.waits_total += 1

    def acquire_timed_out(self) -> None:
        with self._lock:
            self.timeouts_total += 1


# --- connections that count themselves -----------------------------------------------------


class CountedHTTPConnection(HTTPConnection):
    """A connection that reports its socket's opening and closing to its pool's counters.

    Counting here, not in the pool, catches every way a socket ends: an idle timeout, an answer
    left unread (the response closes it), ``Connection: close`` from the upstream (http.client
    lets go of it as the headers arrive), an error mid-request.
    """

    counters: PoolCounters | None = None
    # When the connection last went back to the pool (the pool's clock).
    idle_since: float = 0.0

    def connect(self) -> None:
        try:
            super().connect()
        finally:  # a TLS handshake can fail after the socket opened; close() will count that one
            if self.sock is not None and self.counters is not None:
                self.counters.connection_opened()

    def close(self) -> None:
        was_open = self.sock is not None
        super().close()
        if was_open and self.counters is not None:
            self.counters.connection_closed()


class CountedHTTPSConnection(CountedHTTPConnection, HTTPSConnection):
    """The TLS variant: urllib3's HTTPSConnection, counted the same way."""


# --- the pool ------------------------------------------------------------------------------


class UpstreamConnectionPool(HTTPConnectionPool):
    """urllib3's pool in blocking mode, with an acquire timeout, idle expiry and counters.

    urllib3 keeps a last-in first-out queue of ``maxsize`` slots: a connection, or ``None`` (room
    to open one). Taking from an empty queue is the wait; putting back stamps ``idle_since``.
    """

    ConnectionCls = CountedHTTPConnection

    def __init__(self, host: str, port: int | None = None, *, policy: PoolPolicy, clock: Clock, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.policy = policy
        self.clock = clock
        self.counters = PoolCounters()

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        """A connection for one request: a pooled one, or a new one while below the maximum.

        ``timeout`` is urlopen's ``pool_timeout``; by default the policy's acquire timeout.
        """
        conn = self._take_slot(self.policy.acquire_timeout if timeout is None else timeout)
        if conn is None:  # a free slot: below the maximum, so a new connection may open
            conn = self._new_conn()
            if isinstance(conn, CountedHTTPConnection):
                conn.counters = self.counters
        elif isinstance(conn, CountedHTTPConnection) and self._is_stale(conn):
            conn.close()  # the object stays and reconnects when the request is sent
        return conn

    def _take_slot(self, timeout: float) -> BaseHTTPConnection | None:
        """Take a slot from the queue, waiting at most ``timeout`` seconds when all are in use."""
        slots = self.pool
        if slots is None:
            raise ClosedPoolError(self, "Pool is closed.")
        try:
            conn = slots.get(block=False)
        except queue.Empty:
            self.counters.acquire_waited()
            try:
                conn = slots.get(block=True, timeout=timeout)
            except queue.Empty:
                self.counters.acquire_timed_out()
                raise EmptyPoolError(self, ACQUIRE_TIMED_OUT_MESSAGE) from None
        self.counters.connection_taken()
        return conn

    def _is_stale(self, conn: CountedHTTPConnection) -> bool:
        """Closed by the upstream, or idle past the timeout and not one of the minimum kept.

        The queue is last-in first-out, so ``conn`` is the most recently returned idle
        connection: when it has expired, every idle one has, and with a minimum above zero it
        is one of those the minimum keeps.
        """
        if conn.sock is None:
            return False  # already closed; it reconnects on use
        if not conn.is_connected:
            return True
        expired = self.clock() - conn.idle_since > self.policy.idle_timeout
        return expired and self.policy.min_idle == 0

    def _put_conn(self, conn: BaseHTTPConnection | None) -> None:
        if isinstance(conn, CountedHTTPConnection):
            conn.idle_since = self.clock()
        self.counters.connection_returned()
        super()._put_conn(conn)

    def close_idle(self, now: float) -> int:
        """Close idle connections the upstream dropped or that expired; return how many.

        Expiry spares the ``min_idle`` most recently used connections; a dropped one never is.
        """
        slots = self.pool
        if slots is None:
            return 0
        closing: list[CountedHTTPConnection] = []
        with slots.mutex:  # the queue's own lock: no request takes or returns one meanwhile
            kept = 0
            stack = slots.queue  # a list; the most recently returned connection is last
            for index in range(len(stack) - 1, -1, -1):
                conn = stack[index]
                if not isinstance(conn, CountedHTTPConnection) or conn.sock is None:
                    continue
                fresh = now - conn.idle_since <= self.policy.idle_timeout
                if conn.is_connected and (fresh or kept < self.policy.min_idle):
                    kept += 1
                    continue
                stack[index] = None  # the slot stays: a new connection opens when one is needed
                closing.append(conn)
        for conn in closing:  # outside the lock: requests need not wait for the sockets to close
            conn.close()
        return len(closing)

    def idle_count(self) -> int:
        slots = self.pool
        if slots is None:
            return 0
        with slots.mutex:
            return sum(1 for conn in slots.queue if conn is not None and conn.sock is not None)

    def stats(self) -> PoolStats:
        counters = self.counters
        return PoolStats(
            origin=f"{self.scheme}://{self.host}:{self.port}",
            max_size=self.policy.max_size,
            in_use=counters.in_use,
            idle=self.idle_count(),
            opened_total=counters.opened_total,
            closed_total=counters.closed_total,
            waits_total=counters.waits_total,
            timeouts_total=counters.timeouts_total,
        )


class UpstreamHTTPSConnectionPool(UpstreamConnectionPool, HTTPSConnectionPool):
    """The same pool for https origins."""

    ConnectionCls = CountedHTTPSConnection


class UpstreamPoolManager(urllib3.PoolManager):
    """urllib3's PoolManager handing out our pools, all under one policy and one clock."""

    def __init__(self, policy: PoolPolicy, *, num_pools: int, clock: Clock = time.monotonic) -> None:
        super().__init__(num_pools=num_pools, maxsize=policy.max_size, block=True, retries=False)
        self.pool_classes_by_scheme = {"http": UpstreamConnectionPool, "https": UpstreamHTTPSConnectionPool}
        self.policy = policy
        self.clock = clock
        # Every pool made, to list them for statistics and sweeps; the manager's own container
        # would reorder its least-recently-used list on every read.
        self._made: weakref.WeakSet[UpstreamConnectionPool] = weakref.WeakSet()
        self._made_lock = threading.Lock()

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        """urllib3's documented hook: the policy and clock cannot travel in the pool key."""
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context.update(policy=self.policy, clock=self.clock)
        pool = super()._new_pool(scheme, host, port, request_context=context)
        if isinstance(pool, UpstreamConnectionPool):
            with self._made_lock:
                self._made.add(pool)
        return pool

    def live_pools(self) -> list[UpstreamConnectionPool]:
        """The pools not closed yet (urllib3 closes the least recently used beyond num_pools)."""
        with self._made_lock:
            return [pool for pool in self._made if pool.pool is not None]

    def close_idle_connections(self) -> int:
        now = self.clock()
        return sum(pool.close_idle(now) for pool in self.live_pools())

    def stats(self) -> list[PoolStats]:
        return sorted((pool.stats() for pool in self.live_pools()), key=lambda stats: stats["origin"])


class IdleSweeper:
    """A daemon thread that closes expired and dropped idle connections every ``interval`` s."""

    def __init__(self, manager: UpstreamPoolManager, interval: float) -> None:
        self.manager = manager
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upstream-pool-sweeper", daemon=True)

    def start(self) -> IdleSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.manager.close_idle_connections()
            except Exception:  # a sweep that fails must not end the sweeping
                logger.exception("sweeping idle upstream connections failed")


# --- the process's pools -------------------------------------------------------------------

_manager: UpstreamPoolManager | None = None
_sweeper: IdleSweeper | None = None
_manager_lock = threading.Lock()


def _shared_manager() -> UpstreamPoolManager:
    """This process's manager, built on first use (after a server's fork, never before it)."""
    global _manager, _sweeper
    manager = _manager
    if manager is not None:
        return manager
    with _manager_lock:
        if _manager is None:
            _manager = UpstreamPoolManager(PoolPolicy.from_settings(), num_pools=performance_settings.pool_num_pools)
            interval = performance_settings.pool_validation_interval_seconds
            _sweeper = IdleSweeper(_manager, interval).start() if interval > 0 else None
        return _manager


def upstream_pool(scheme: str, host: str, port: int) -> urllib3.HTTPConnectionPool:
    """The pool for one upstream origin."""
    return _shared_manager().connection_from_host(host, port=port, scheme=scheme)


def pool_stats() -> list[PoolStats]:
    """Figures for every upstream pool of this process, sorted by origin.

        >>> pool_stats()
        [{'origin': 'http://127.0.0.1:9100', 'max_size': 256, 'in_use': 3, 'idle': 5,
          'opened_total': 9, 'closed_total': 1, 'waits_total': 0, 'timeouts_total': 0}]
    """
    manager = _manager
    return manager.stats() if manager is not None else []


def close_idle_connections() -> int:
    """Run one sweep now (the sweeper thread does this periodically); return how many closed."""
    manager = _manager
    return manager.close_idle_connections() if manager is not None else 0


def close_all_pools() -> None:
    """Close every pooled connection and stop the sweeper (tests, shutdown, new settings)."""
    global _manager, _sweeper
    with _manager_lock:
        if _sweeper is not None:
            _sweeper.stop()
        if _manager is not None:
            _manager.clear()
        _manager = _sweeper = None


@receiver(setting_changed)
def _rebuild_pools_for_new_settings(*, setting: str, **kwargs: Any) -> None:
    """The policy is read once per manager; a changed pool setting (tests) needs a new one."""
    if setting.startswith("GATEWAY_POOL_"):
        close_all_pools()


# --- giving a response's connection back ----------------------------------------------------

# An unread rest up to this size is read so the connection can be reused; anything longer (or
# an endless stream) costs more than a new connection, so the connection is closed instead.
DISCARD_READ_LIMIT = 64 * 1024


def release(response: urllib3.BaseHTTPResponse, *, complete: bool) -> None:
    """Give a response's connection back to its pool; only a fully read one can be reused.

    Every response must come back this way (or through ``discard``): the pool's maximum counts
    a connection as in use until it does.
    """
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
