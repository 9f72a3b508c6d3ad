"""The in-process, read-only copy of routing configuration that the hot path reads.

Built from the database once, then again only when the config version moves (see
``config_version.py``), so a warm proxied request makes zero database queries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from routing.config_version import register_stale_flag
from routing.models import PathMatch, Route, Service, Target


@dataclass(frozen=True, slots=True)
class TargetConfig:
    id: int
    url: str
    scheme: str
    host: str
    port: int
    base_path: str
    weight: int
    healthy: bool
    auth_header: str
    auth_value: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        default_port = 443 if self.scheme == "https" else 80
        return self.host if self.port == default_port else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    id: int
    name: str
    kind: str
    lb_policy: str
    connect_timeout: float
    request_timeout: float
    response_timeout: float
    max_retries: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    retry_budget_percent: int
    circuit_failure_threshold: int
    circuit_window_seconds: float
    circuit_recovery_seconds: float
    circuit_half_open_probes: int
    health_check_path: str
    health_check_interval: float
    health_check_timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    passive_failure_threshold: int
    passive_ejection_seconds: float
    targets: tuple[TargetConfig, ...]


@dataclass(frozen=True, slots=True)
class RouteConfig:
    id: int
    name: str
    path: str
    path_match: str
    methods: frozenset[str]
    header_matchers: tuple[tuple[str, str], ...]
    query_matchers: tuple[tuple[str, str], ...]
    content_matchers: tuple[tuple[str, str], ...]
    priority: int
    path_rewrite: str
    service: ServiceConfig

    @property
    def precedence(self) -> tuple[int, int, int, int, str]:
        """Sort key, smallest first: priority, then exact before prefix, then the longer
        path, then the route with more matchers, then the name (so ties are deterministic)."""
        matcher_count = len(self.header_matchers) + len(self.query_matchers) + len(self.content_matchers)
        exact_first = 0 if self.path_match == PathMatch.EXACT else 1
        return (-self.priority, exact_first, -len(self.path), -matcher_count, self.name)


@dataclass(frozen=True, slots=True)
class Snapshot:
    routes: tuple[RouteConfig, ...]  # in precedence order
    services: dict[str, ServiceConfig]
    uses_header_matchers: bool  # lets matching skip building a header map for most requests


def _target_config(target: Target) -> TargetConfig:
    parts = urlsplit(target.url)
    scheme = parts.scheme or "http"
    return TargetConfig(
        id=target.id,
        url=target.url,
        scheme=scheme,
        host=parts.hostname or "",
        port=parts.port or (443 if scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
        weight=target.weight,
        healthy=target.healthy,
        auth_header=target.upstream_auth_header,
        auth_value=target.upstream_auth_value,
    )


def service_config(service: Service) -> ServiceConfig:
    """The frozen view of a service row (with its targets prefetched) that the hot path reads."""
    targets = tuple(_target_config(t) for t in service.targets.all() if t.enabled)
    return ServiceConfig(
        id=service.id,
        name=service.name,
        kind=service.kind,
        lb_policy=service.lb_policy,
        connect_timeout=service.connect_timeout,
        request_timeout=service.request_timeout,
        response_timeout=service.response_timeout,
        max_retries=service.max_retries,
        retry_backoff_ms=service.retry_backoff_ms,
        retry_backoff_max_ms=service.retry_backoff_max_ms,
        retry_budget_percent=service.retry_budget_percent,
        circuit_failure_threshold=service.circuit_failure_threshold,
        circuit_window_seconds=service.circuit_window_seconds,
        circuit_recovery_seconds=service.circuit_recovery_seconds,
        circuit_half_open_probes=service.circuit_half_open_probes,
        health_check_path=service.health_check_path,
        health_check_interval=service.health_check_interval,
        health_check_timeout=service.health_check_timeout,
        healthy_threshold=service.healthy_threshold,
        unhealthy_threshold=service.unhealthy_threshold,
        passive_failure_threshold=service.passive_failure_threshold,
        passive_ejection_seconds=service.passive_ejection_seconds,
        targets=targets,
    )


def _sorted_pairs(matchers: dict[str, str], *, lower_keys: bool = False) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(((k.lower() if lower_keys else k), str(v)) for k, v in matchers.items()))


def build_snapshot() -> Snapshot:
    """Read every enabled route with its service and targets (three queries)."""
    services = {s.id: service_config(s) for s in Service.objects.prefetch_related("targets")}
    routes = [
        RouteConfig(
            id=route.id,
            name=route.name,
            path=route.path,
            path_match=route.path_match,
            methods=frozenset(m.upper() for m in route.methods or ()),
            header_matchers=_sorted_pairs(route.header_matchers or {}, lower_keys=True),
            query_matchers=_sorted_pairs(route.query_matchers or {}),
            content_matchers=_sorted_pairs(route.content_matchers or {}),
            priority=route.priority,
            path_rewrite=route.path_rewrite,
            service=services[route.service_id],
        )
        for route in Route.objects.filter(enabled=True)
    ]
    routes.sort(key=lambda r: r.precedence)
    return Snapshot(
        routes=tuple(routes),
        services={s.name: s for s in services.values()},
        uses_header_matchers=any(r.header_matchers for r in routes),
    )


class SnapshotHolder:
    """Holds the current snapshot; rebuilds it on first use and after the stale flag is set."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._rebuild_lock = threading.Lock()
        self.stale = threading.Event()
        register_stale_flag(self.stale)

    def get(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and not self.stale.is_set():
            return snapshot
        with self._rebuild_lock:
            if self._snapshot is None or self.stale.is_set():
                # Clear first: a change landing during the rebuild sets it again.
                self.stale.clear()
                self._snapshot = build_snapshot()
            return self._snapshot


_holder = SnapshotHolder()


def get_snapshot() -> Snapshot:
    return _holder.get()
