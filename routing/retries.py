"""When a failed attempt may be tried again, how long to wait, and how many retries to allow.

A retry must never run a side effect twice: a request whose body may have reached an upstream
is retried only when repeating it is harmless (idempotent HTTP methods; MCP reads; a
``tools/call`` only for tools the route marks idempotent). A connect failure never reached
anyone, so it is always safe to try on another target.

A retry budget caps retries at a share of recent requests, per service and per process, so
that when an upstream falls over the gateway adds at most that share of extra load.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway_project.exchange import Exchange
from routing.snapshot import ServiceConfig

RETRYABLE_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_HTTP_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# MCP requests without side effects on the server (reads, lists, the handshake, liveness).
SIDE_EFFECT_FREE_MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "completion/complete",
    }
)
BUDGET_WINDOW_SECONDS = 10.0
# However small the traffic, this many retries per window are allowed.
BUDGET_MINIMUM_RETRIES = 3


def is_safe_to_repeat(exchange: Exchange) -> bool:
    """Could sending this request a second time change anything upstream?"""
    route = exchange.route
    assert route is not None
    rpc = exchange.rpc
    if exchange.is_mcp and rpc is not None:
        if rpc.is_batch or rpc.parse_error or rpc.invalid:
            return False
        if rpc.method == "tools/call":
            return rpc.name in route.idempotent_tools
        return rpc.method in SIDE_EFFECT_FREE_MCP_METHODS
    return (exchange.request.method or "GET") in IDEMPOTENT_HTTP_METHODS


def backoff_seconds(service: ServiceConfig, retry_number: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**n)]."""
    ceiling_ms = min(service.retry_backoff_max_ms, service.retry_backoff_ms * (2**retry_number))
    return random.uniform(0, ceiling_ms) / 1000.0


@dataclass
class _BudgetCounts:
    """Requests and retries in the current window and the one before it."""

    window: int
    requests: int = 0
    retries: int = 0
    previous_requests: int = 0
    previous_retries: int = 0

    def roll_to(self, window: int) -> None:
        if window == self.window:
            return
        if window == self.window + 1:
            self.previous_requests, self.previous_retries = self.requests, self.retries
        else:
            self.previous_requests = self.previous_retries = 0
        self.window, self.requests, self.retries = window, 0, 0


class RetryBudget:
    """Per-service retry allowance over the last one to two windows (per process)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[int, _BudgetCounts] = {}

    def _counts_for(self, service_id: int) -> _BudgetCounts:
        window = int(self._clock() // BUDGET_WINDOW_SECONDS)
        counts = self._counts.setdefault(service_id, _BudgetCounts(window))
        counts.roll_to(window)
        return counts

    def record_request(self, service_id: int) -> None:
        with self._lock:
            self._counts_for(service_id).requests += 1

    def try_spend(self, service: ServiceConfig) -> bool:
        """Take one retry from the budget; False when retries would exceed their share."""
        with self._lock:
            counts = self._counts_for(service.id)
            recent_requests = counts.requests + counts.previous_requests
            allowed = max(BUDGET_MINIMUM_RETRIES, recent_requests * service.retry_budget_percent / 100)
            if counts.retries + counts.previous_retries >= allowed:
                return False
            counts.retries += 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


retry_budget = RetryBudget()
