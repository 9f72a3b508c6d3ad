"""Everything the dashboard shows, gathered into one JSON-ready document.

The page itself reads nothing: its script fetches ``/dashboard/data.json`` every few seconds and
that view returns ``gather_overview()``. Each part is read from the app that owns it:

    gateway        the whole gateway, last 5 minutes       monitoring.queries.snapshot
    series         the last hour, one point per interval   monitoring.queries.series
    services       each service's targets: health, circuit, in-flight calls (routing.target_status),
                   active-check response time (the Target row) and traffic (snapshot "target")
    routes         traffic, p95/p99, error rate per route  routing.models + snapshot "route"
    top_api_keys   the busiest keys, with their names      snapshot "api_key" + security.models
    top_tools      the busiest MCP tools                   snapshot "tool"
    alerts         the enabled rules, and those firing     monitoring.alerts
    cache          response-cache hits, misses, hit rate   performance.cache.cache_stats
    pools          upstream connection pools               performance.pools.pool_stats
    processes      memory, CPU, in-flight per process      monitoring.queries.process_gauges

When the state store cannot be read, a part is empty (or null) and ``unavailable`` names it with
the reason: a Redis outage gives a page that says so, not a page that fails.

Units: latencies in milliseconds, error rates as fractions (0.0 to 1.0), throughput in requests
per second, times in epoch seconds.

Cost per call: five small database queries and about a dozen state-store round trips, whatever
the traffic (each dimension is one read). Fine for a few operators polling every 5 s; nothing
here runs on the request path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any, TypeVar

from django.db.models import OuterRef, Subquery

from gateway_project.state import StateStoreUnavailable
from monitoring.alerts import RuleState, enabled_rules, read_rule_states
from monitoring.conf import monitoring_settings
from monitoring.histogram import Tally
from monitoring.layout import ALL_KEY
from monitoring.models import AlertEvent, AlertRule
from monitoring.queries import KeyStats, process_gauges, series, snapshot
from performance.cache import cache_stats
from performance.pools import pool_stats
from routing.models import Route, Service, Target
from routing.target_status import LiveStatus, live_statuses
from security.models import ApiKey

logger = logging.getLogger(__name__)

# Tables show the last five minutes: long enough that a quiet route still shows its numbers,
# short enough that a fix shows within minutes. The charts show the hour the metrics keep.
RECENT_WINDOW_SECONDS = 300
SERIES_MINUTES = 60
TOP_COUNT = 10

STATE_STORE_DOWN = "The state store cannot be reached; shown again once it answers."
POOLS_FAILED = "The connection pools could not be read (see the gateway's log)."

Json = dict[str, Any]
T = TypeVar("T")

# Each dimension read for the tables, and the part of the document it feeds.
PART_OF_DIMENSION = {
    "gateway": "gateway",
    "route": "routes",
    "target": "services",
    "api_key": "top_api_keys",
    "tool": "top_tools",
}


class PartReader:
    """Reads the parts of the overview, noting (rather than raising) those whose store is down:
    ``read`` gives None for those."""

    def __init__(self) -> None:
        self.unavailable: dict[str, str] = {}

    def read(self, part: str, reader: Callable[[], T]) -> T | None:
        try:
            return reader()
        except StateStoreUnavailable:
            self.unavailable[part] = STATE_STORE_DOWN
            return None


def gather_overview(now: float | None = None) -> Json:
    """The whole document ``/dashboard/data.json`` answers (``now``: epoch seconds)."""
    now = time.time() if now is None else now
    parts = PartReader()
    recent = {
        dimension: parts.read(part, partial(snapshot, dimension, RECENT_WINDOW_SECONDS, now)) or {}
        for dimension, part in PART_OF_DIMENSION.items()
    }
    document: Json = {
        "generated_at": now,
        "window_seconds": RECENT_WINDOW_SECONDS,
        "interval_seconds": monitoring_settings.interval_seconds,
        "gateway": stats_json(recent["gateway"].get(ALL_KEY)),
        "series": parts.read("series", partial(series_points, now)) or [],
        "services": services_part(recent["target"], parts),
        "routes": routes_part(recent["route"]),
        "top_api_keys": top_api_keys(recent["api_key"]),
        "top_tools": top_tools(recent["tool"]),
        "alerts": parts.read("alerts", alerts_part),
        "cache": parts.read("cache", cache_stats),
        "pools": pools_part(parts),
        "processes": parts.read("processes", partial(processes_part, now)) or [],
    }
    document["unavailable"] = parts.unavailable
    return document


# --- traffic ---------------------------------------------------------------------------------------


def stats_json(stats: KeyStats | None) -> Json:
    """A key's recent statistics; a key without traffic gets zeros and null percentiles."""
    stats = stats or KeyStats.of(Tally(), RECENT_WINDOW_SECONDS)
    return {name: _rounded(value) for name, value in asdict(stats).items()}


def series_points(now: float) -> list[Json]:
    """The whole gateway's last hour, oldest first, one point per metrics interval."""
    interval = monitoring_settings.interval_seconds
    return [
        {
            "t": point.t,
            "count": point.count,
            "throughput_rps": _rounded(point.count / interval),
            "p50_ms": _rounded(point.p50_ms),
            "p95_ms": _rounded(point.p95_ms),
            "p99_ms": _rounded(point.p99_ms),
            "error_rate": _rounded(point.error_rate),
        }
        for point in series("gateway", ALL_KEY, SERIES_MINUTES, now)
    ]


def busiest(stats: dict[str, KeyStats]) -> list[tuple[str, KeyStats]]:
    """The ``TOP_COUNT`` keys with the most exchanges (ties by key, so the order is stable)."""
    return sorted(stats.items(), key=lambda item: (-item[1].count, item[0]))[:TOP_COUNT]


def routes_part(route_stats: dict[str, KeyStats]) -> list[Json]:
    """Every route, busiest first; routes without recent traffic too (with zeros)."""
    rows = [
        {
            "name": route.name,
            "path": route.path,
            "service": route.service.name,
            "enabled": route.enabled,
            **stats_json(route_stats.get(route.name)),
        }
        for route in Route.objects.select_related("service").order_by("name")
    ]
    return sorted(rows, key=lambda row: -row["count"])  # stable: equal counts stay by name


def top_api_keys(key_stats: dict[str, KeyStats]) -> list[Json]:
    """The busiest API keys, named (a key deleted since keeps its id and a null name)."""
    top = busiest(key_stats)
    ids = [int(key) for key, _ in top if key.isdigit()]
    names = dict(ApiKey.objects.filter(pk__in=ids).values_list("pk", "name"))
    return [
        {"id": key, "name": names.get(int(key)) if key.isdigit() else None, **stats_json(stats)}
        for key, stats in top
    ]


def top_tools(tool_stats: dict[str, KeyStats]) -> list[Json]:
    """The busiest tools, named ``<service>:<tool>``."""
    return [{"name": key, **stats_json(stats)} for key, stats in busiest(tool_stats)]


# --- services and targets --------------------------------------------------------------------------


def services_part(target_stats: dict[str, KeyStats], parts: PartReader) -> list[Json]:
    """Every service with its targets, as the hot path sees them right now."""
    services = list(Service.objects.prefetch_related("targets").order_by("name"))
    target_ids = [target.pk for service in services for target in service.targets.all()]
    statuses = parts.read("services", partial(live_statuses, target_ids)) or {}
    return [
        {
            "name": service.name,
            "kind": service.kind,
            "lb_policy": service.get_lb_policy_display(),
            "targets": [
                target_json(target, statuses.get(target.pk), target_stats.get(target.url))
                for target in service.targets.all()
            ],
        }
        for service in services
    ]


def target_json(target: Target, status: LiveStatus | None, stats: KeyStats | None) -> Json:
    """One target's row; ``status`` None when the state store could not say."""
    return {
        "id": target.pk,
        "url": target.url,
        "enabled": target.enabled,
        "health": target_health(target, status),
        "status": status.summary if status else None,
        "circuit": status.circuit if status else None,
        "in_flight": status.in_flight if status else None,
        "checked_ms": _rounded(target.response_time_ms),
        "last_check": target.last_health_check.timestamp() if target.last_health_check else None,
        "traffic": stats_json(stats),
    }


def target_health(target: Target, status: LiveStatus | None) -> str:
    """One word for the health column: what the balancer acts on, not the last stored check.

    ``disabled``, ``unknown`` (state store down), ``down`` (failed active checks), ``ejected``
    (failing live traffic), or ``healthy``. The circuit breaker has a column of its own.
    """
    if not target.enabled:
        return "disabled"
    if status is None:
        return "unknown"
    if status.down:
        return "down"
    if status.ejected:
        return "ejected"
    return "healthy"


# --- alerts ----------------------------------------------------------------------------------------


def alerts_part() -> Json:
    """How many rules are enabled, and those firing as of their last evaluation."""
    latest_event = AlertEvent.objects.filter(rule=OuterRef("pk")).order_by("-at", "-id").values("at")[:1]
    rules = list(enabled_rules().annotate(last_event_at=Subquery(latest_event)))
    states = read_rule_states([rule.pk for rule in rules])
    firing = [rule for rule in rules if is_firing(rule, states.get(rule.pk))]
    return {"enabled_rules": len(rules), "firing": [firing_alert_json(rule, states.get(rule.pk)) for rule in firing]}


def is_firing(rule: AlertRule, state: RuleState | None) -> bool:
    """The evaluator's own reading: the stored state, else the state of the rule's latest event
    (after an embedded gateway restarts, until the next evaluation stores one)."""
    if state is not None:
        return state.firing
    return getattr(rule, "last_state", None) == AlertEvent.State.FIRING


def firing_alert_json(rule: AlertRule, state: RuleState | None) -> Json:
    since = getattr(rule, "last_event_at", None)
    return {
        "name": rule.name,
        "metric": rule.metric,
        "description": rule.get_metric_display(),
        "scope": rule.scope_label,
        "threshold": rule.threshold,
        "value": _rounded(state.value) if state else None,
        "window_seconds": rule.window_seconds,
        "since": since.timestamp() if since else None,
    }


# --- cache, pools, processes -----------------------------------------------------------------------


def pools_part(parts: PartReader) -> list[Json] | None:
    """The upstream pools of the process answering this request (pools are per process, so with
    several workers each poll may show another worker's). None when they cannot be read."""
    try:
        return [dict(pool) for pool in pool_stats()]
    except Exception:  # the pools are one part of a page that must show the others
        logger.exception("reading the connection pools for the dashboard failed")
        parts.unavailable["pools"] = POOLS_FAILED
        return None


def processes_part(now: float) -> list[Json]:
    """Every live gateway process's memory, CPU and in-flight exchanges, by name."""
    return [asdict(gauges) for gauges in process_gauges(now)]


def _rounded(value: Any) -> Any:
    """Floats to four decimals (enough for an error rate's hundredths of a percent)."""
    return round(value, 4) if isinstance(value, float) else value
