"""Counting exchanges in process memory, per route, target, API key and tool.

The request path only adds to in-memory tallies under one lock (a few dict updates per
exchange: no store, no network, no database); ``flush.py`` moves them to the shared store every
interval. Each finished exchange counts once in every dimension it belongs to:

    gateway   key "all": every exchange, also early refusals and unrouted paths
    route     the route's name, when one matched
    target    the target's URL, when one was chosen
    api_key   the API key's id, when the caller used one
    tool      "<service>:<tool>" for a ``tools/call`` on a matched route

What counts as an error: a 5xx answer (the upstream's own, or the gateway's 502/503/504 and
500), or a stream that broke off or fell silent after a 2xx had begun (the gateway records an
error code on it). 4xx answers are not errors: they are the gateway doing its job (refusing a
bad request, a missing credential, a rate limit) or the caller's mistake, and counting them
would page an operator whenever a client misbehaves. Their count is still in ``count``.

Tool names come from the caller, so one process admits at most ``MAX_TOOL_KEYS`` distinct tool
keys; calls to further names count under ``"<service>:(other)"``, which keeps a client that
invents names from growing the store without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from gateway_project.exchange import Exchange
from monitoring.histogram import Tally, bucket_index
from monitoring.layout import ALL_KEY

MAX_TOOL_KEYS = 1000
MAX_TOOL_NAME_LENGTH = 128
OTHER_TOOLS = "(other)"

DimensionKey = tuple[str, str]


def is_error(exchange: Exchange) -> bool:
    """A 5xx, or a 2xx/3xx the gateway had to cut short (see the module docstring)."""
    if exchange.status >= 500:
        return True
    return exchange.status < 400 and bool(exchange.error_code)


def dimension_keys(exchange: Exchange) -> list[DimensionKey]:
    """Every (dimension, key) the exchange counts under."""
    keys: list[DimensionKey] = [("gateway", ALL_KEY)]
    route = exchange.route
    if route is not None:
        keys.append(("route", route.name))
    if exchange.target is not None:
        keys.append(("target", exchange.target.url))
    if exchange.api_key_id:
        keys.append(("api_key", exchange.api_key_id))
    rpc = exchange.rpc
    if route is not None and rpc is not None and rpc.method == "tools/call" and not rpc.is_batch and rpc.name:
        keys.append(("tool", f"{route.service.name}:{rpc.name[:MAX_TOOL_NAME_LENGTH]}"))
    return keys


class Recorder:
    """This process's tallies since the last flush, keyed by (dimension, key); thread-safe."""

    def __init__(self, max_tool_keys: int = MAX_TOOL_KEYS) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[DimensionKey, Tally] = {}
        self._max_tool_keys = max_tool_keys
        # Kept across flushes: the cap is on what this process ever sends, not per interval.
        self._tool_keys: set[str] = set()

    def observe(self, exchange: Exchange) -> None:
        self.add(dimension_keys(exchange), exchange.elapsed_ms(), is_error=is_error(exchange))

    def add(self, keys: Iterable[DimensionKey], latency_ms: float, *, is_error: bool) -> None:
        """Count one exchange of ``latency_ms`` under each of ``keys``."""
        bucket, latency_us = bucket_index(latency_ms), round(latency_ms * 1000)
        with self._lock:
            for dimension, key in keys:
                if dimension == "tool":
                    key = self._admitted_tool_key(key)
                tally = self._tallies.get((dimension, key))
                if tally is None:
                    tally = self._tallies[(dimension, key)] = Tally()
                tally.add_measured(bucket, latency_us, is_error=is_error)

    def drain(self) -> dict[DimensionKey, Tally]:
        """Hand over everything counted so far and start again from zero."""
        with self._lock:
            drained, self._tallies = self._tallies, {}
        return drained

    def restore(self, tallies: Mapping[DimensionKey, Tally]) -> None:
        """Take back tallies a flush could not deliver; they go out with the next flush."""
        with self._lock:
            for dimension_key, tally in tallies.items():
                current = self._tallies.get(dimension_key)
                if current is None:
                    self._tallies[dimension_key] = tally
                else:
                    current.merge(tally)

    def _admitted_tool_key(self, key: str) -> str:
        """The key itself while under the cap (or already known), else its service's "(other)"."""
        if key in self._tool_keys:
            return key
        if len(self._tool_keys) < self._max_tool_keys:
            self._tool_keys.add(key)
            return key
        service = key.partition(":")[0]  # service names are slugs: the first ":" ends them
        return f"{service}:{OTHER_TOOLS}"


# The process's recorder: every exchange of every thread counts here.
recorder = Recorder()
