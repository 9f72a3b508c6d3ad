"""Reading the metrics: recent statistics per key, a key's last hour, the processes' gauges.

What the dashboard, the REST API, the alerts and /metrics read; never the request path. Every
function reads the store in one round trip (two for the gauges) and takes an explicit ``now``
(epoch seconds) so tests and charts choose the moment.

Time: processes flush just after each interval boundary, into the window named by that
boundary, so the window starting at ``t`` holds what the gateway served in the interval before
``t``. Readers use only windows every process has flushed into (``latest_settled_window``).

    >>> stats = snapshot("route", window_seconds=60)
    >>> stats["weather"].p95_ms, stats["weather"].error_rate
    (112.4, 0.02)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from monitoring.conf import monitoring_settings
from monitoring.flush import GAUGE_TTL_INTERVALS
from monitoring.histogram import Tally
from monitoring.layout import (
    DIMENSIONS,
    key_field_names,
    latest_settled_window,
    tallies_from_fields,
    totals_name,
    window_name,
)
from monitoring.process import ProcessGauges
from monitoring.store import get_metrics_store

UNKNOWN_DIMENSION = "Unknown dimension {dimension!r}; choose one of: " + ", ".join(DIMENSIONS)


@dataclass(frozen=True, slots=True)
class KeyStats:
    """One key's exchanges over a stretch of time. Latencies in milliseconds (None without
    exchanges), error rate as a fraction (0.0 to 1.0), throughput in exchanges per second."""

    count: int
    errors: int
    avg_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float
    throughput_rps: float

    @classmethod
    def of(cls, tally: Tally, seconds: float) -> KeyStats:
        return cls(
            count=tally.count,
            errors=tally.errors,
            avg_ms=tally.average_ms,
            p50_ms=tally.quantile_ms(0.50),
            p95_ms=tally.quantile_ms(0.95),
            p99_ms=tally.quantile_ms(0.99),
            error_rate=tally.error_rate,
            throughput_rps=tally.count / seconds if seconds > 0 else 0.0,
        )


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One interval of a key's time series (``t``: the window's start, epoch seconds)."""

    t: int
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float


def recent_windows(seconds: float, now: float, interval: int) -> list[int]:
    """The starts of the settled windows covering the last ``seconds``, oldest first."""
    latest = latest_settled_window(now, interval)
    count = max(1, math.ceil(seconds / interval))
    return [latest - interval * back for back in range(count - 1, -1, -1)]


def snapshot(dimension: str, window_seconds: float = 60, now: float | None = None) -> dict[str, KeyStats]:
    """Every key of ``dimension`` seen in the last ``window_seconds``, with its statistics."""
    _check_dimension(dimension)
    interval = monitoring_settings.interval_seconds
    starts = recent_windows(window_seconds, _now(now), interval)
    merged: dict[str, Tally] = {}
    for fields in get_metrics_store().read_counters([window_name(dimension, start) for start in starts]):
        for key, tally in tallies_from_fields(fields).items():
            merged.setdefault(key, Tally()).merge(tally)
    seconds = len(starts) * interval
    return {key: KeyStats.of(tally, seconds) for key, tally in sorted(merged.items())}


def stats_for(dimension: str, key: str, window_seconds: float = 60, now: float | None = None) -> KeyStats:
    """One key's statistics over the last ``window_seconds`` (all zero when it had no traffic)."""
    _check_dimension(dimension)
    interval = monitoring_settings.interval_seconds
    starts = recent_windows(window_seconds, _now(now), interval)
    total = Tally()
    for tally in _key_tallies(dimension, key, starts):
        total.merge(tally)
    return KeyStats.of(total, len(starts) * interval)


def series(dimension: str, key: str, minutes: int = 60, now: float | None = None) -> list[SeriesPoint]:
    """One point per interval over the last ``minutes``, oldest first, empty intervals included
    (count 0, no percentiles) so a chart's time axis has no gaps."""
    _check_dimension(dimension)
    interval = monitoring_settings.interval_seconds
    starts = recent_windows(minutes * 60, _now(now), interval)
    return [
        SeriesPoint(
            t=start,
            count=tally.count,
            p50_ms=tally.quantile_ms(0.50),
            p95_ms=tally.quantile_ms(0.95),
            p99_ms=tally.quantile_ms(0.99),
            error_rate=tally.error_rate,
        )
        for start, tally in zip(starts, _key_tallies(dimension, key, starts))
    ]


def totals() -> dict[str, dict[str, Tally]]:
    """Per dimension, every key's tally since the counts began (the /metrics counters)."""
    replies = get_metrics_store().read_counters([totals_name(dimension) for dimension in DIMENSIONS])
    return {
        dimension: dict(sorted(tallies_from_fields(fields).items())) for dimension, fields in zip(DIMENSIONS, replies)
    }


def process_gauges(now: float | None = None) -> list[ProcessGauges]:
    """The gauges of every live process (flushed within the last three intervals), by name."""
    oldest = _now(now) - GAUGE_TTL_INTERVALS * monitoring_settings.interval_seconds
    entries = [ProcessGauges.from_json(value) for value in get_metrics_store().read_gauges().values()]
    return sorted((entry for entry in entries if entry.at >= oldest), key=lambda entry: entry.process)


def _key_tallies(dimension: str, key: str, starts: list[int]) -> list[Tally]:
    """``key``'s tally in each window of ``starts`` (empty where it had none)."""
    names = [window_name(dimension, start) for start in starts]
    replies = get_metrics_store().read_counters(names, fields=key_field_names(key))
    return [tallies_from_fields(fields).get(key, Tally()) for fields in replies]


def _check_dimension(dimension: str) -> None:
    if dimension not in DIMENSIONS:
        raise ValueError(UNKNOWN_DIMENSION.format(dimension=dimension))


def _now(now: float | None) -> float:
    return time.time() if now is None else now
