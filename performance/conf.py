"""Performance settings, read through properties so ``override_settings`` works in tests."""

from __future__ import annotations

from django.conf import settings


class PerformanceSettings:
    @property
    def pool_maxsize(self) -> int:
        """Most connections to one upstream origin at once, in use or idle (per process)."""
        return int(settings.GATEWAY_POOL_MAXSIZE)

    @property
    def pool_min_idle(self) -> int:
        """Idle connections per origin that closing for idleness leaves open."""
        return int(settings.GATEWAY_POOL_MIN_IDLE)

    @property
    def pool_idle_timeout_seconds(self) -> float:
        """A connection idle longer than this is closed instead of reused."""
        return float(settings.GATEWAY_POOL_IDLE_TIMEOUT_SECONDS)

    @property
    def pool_acquire_timeout_seconds(self) -> float:
        """How long a request waits for a connection when all are in use, before its 503."""
        return float(settings.GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS)

    @property
    def pool_validation_interval_seconds(self) -> float:
        """How often each process sweeps its idle connections (0: only when one is taken)."""
        return float(settings.GATEWAY_POOL_VALIDATION_INTERVAL_SECONDS)

    @property
    def pool_num_pools(self) -> int:
        """Upstream origins kept pooled at once (least recently used are closed first)."""
        return int(settings.GATEWAY_POOL_NUM_POOLS)

    @property
    def max_in_flight(self) -> int:
        """Proxied exchanges one process serves at once before answering 503."""
        return int(settings.GATEWAY_MAX_IN_FLIGHT)

    # Batching and fan-out (performance/batching.py, microbatch.py, fanout.py). Read with a
    # default until settings.py names them.

    @property
    def batch_max_items(self) -> int:
        """Most items one client JSON-RPC batch may hold (more: -32600)."""
        return int(getattr(settings, "GATEWAY_BATCH_MAX_ITEMS", 10))

    @property
    def batch_timeout_seconds(self) -> float:
        """How long a batch waits for its items; an item still running gets its own error."""
        return float(getattr(settings, "GATEWAY_BATCH_TIMEOUT_SECONDS", 1.0))

    @property
    def batch_workers(self) -> int:
        """Threads running batch items, per process (items beyond them queue, within the timeout)."""
        return int(getattr(settings, "GATEWAY_BATCH_WORKERS", 32))

    @property
    def microbatch_window_seconds(self) -> float:
        """Longest a call waits for others to share its upstream batch."""
        return float(getattr(settings, "GATEWAY_MICROBATCH_WINDOW_SECONDS", 0.1))

    @property
    def microbatch_max_items(self) -> int:
        """Calls in one upstream batch; a full batch is sent at once, before the window ends."""
        return int(getattr(settings, "GATEWAY_MICROBATCH_MAX_ITEMS", 10))

    @property
    def fanout_workers(self) -> int:
        """Threads asking fan-out services, per process."""
        return int(getattr(settings, "GATEWAY_FANOUT_WORKERS", 32))


performance_settings = PerformanceSettings()
