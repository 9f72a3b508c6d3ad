"""The in-process, read-only copy of routing configuration that the hot path reads.

Built from the database once, then again only when the config version moves (see
``config_version.py``), so a warm proxied request makes zero database queries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from routing.config_version import ConfigCache
from routing.matchers import ValueMatcher, compile_path_pattern, compile_value_matchers
from security.origin import normalize_origin
from routing.models import PathMatch, Route, SanitizationMode, Service, ServiceKind, Target

logger = logging.getLogger(__name__)


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

    @property
    def speaks_mcp(self) -> bool:
        """An MCP server upstream, or a virtual server the gateway serves itself: either way the
        callers are MCP clients and get JSON-RPC errors."""
        return self.kind in (ServiceKind.MCP, ServiceKind.VIRTUAL)


# Among routes of equal priority, the more specific path kind is tried first.
PATH_KIND_ORDER = {PathMatch.EXACT: 0, PathMatch.PATTERN: 1, PathMatch.PREFIX: 2}


@dataclass(frozen=True, slots=True)
class RouteConfig:
    id: int
    name: str
    path: str
    path_match: str
    path_regex: re.Pattern[str] | None  # for pattern routes
    methods: frozenset[str]
    header_matchers: tuple[ValueMatcher, ...]
    query_matchers: tuple[ValueMatcher, ...]
    content_matchers: tuple[ValueMatcher, ...]
    priority: int
    path_rewrite: str
    connect_timeout: float  # the route's override, else the service's
    request_timeout: float
    response_timeout: float
    idempotent_tools: frozenset[str]
    cors_allowed_origins: frozenset[str]  # normalized; on top of the gateway-wide list
    injection_detection: str  # block | log | off
    sanitization: str  # escape | off (auto resolved by the service kind)
    allow_anonymous: bool
    required_permissions: tuple[str, ...]
    tool_permissions: bool
    service: ServiceConfig
    upstream_batching: bool = False  # calls micro-batched toward the target (performance/microbatch.py)
    fanout: str = ""  # "" | first | last | merge (performance/fanout.py)
    fanout_services: tuple[ServiceConfig, ...] = ()  # asked together with ``service``, in the operator's order

    @property
    def precedence(self) -> tuple[int, int, int, int, str]:
        """Sort key, smallest first: priority, then exact before pattern before prefix, then
        the longer path, then more matchers, then the name (so ties are deterministic)."""
        matcher_count = len(self.header_matchers) + len(self.query_matchers) + len(self.content_matchers)
        return (-self.priority, PATH_KIND_ORDER[PathMatch(self.path_match)], -len(self.path), -matcher_count, self.name)


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


def _resolved_sanitization(mode: str, kind: str) -> str:
    if mode != SanitizationMode.AUTO:
        return mode
    return SanitizationMode.OFF if kind == ServiceKind.MCP else SanitizationMode.ESCAPE


def route_config(
    route: Route, service: ServiceConfig, services_by_name: Mapping[str, ServiceConfig] | None = None
) -> RouteConfig:
    """Compile one route row: matchers and path pattern once here, never per request."""
    return RouteConfig(
        id=route.id,
        name=route.name,
        path=route.path,
        path_match=route.path_match,
        path_regex=compile_path_pattern(route.path) if route.path_match == PathMatch.PATTERN else None,
        methods=frozenset(m.upper() for m in route.methods or ()),
        header_matchers=compile_value_matchers(route.header_matchers or {}, lower_names=True),
        query_matchers=compile_value_matchers(route.query_matchers or {}),
        content_matchers=compile_value_matchers(route.content_matchers or {}),
        priority=route.priority,
        path_rewrite=route.path_rewrite,
        connect_timeout=route.connect_timeout or service.connect_timeout,
        request_timeout=route.request_timeout or service.request_timeout,
        response_timeout=route.response_timeout or service.response_timeout,
        idempotent_tools=frozenset(route.idempotent_tools or ()),
        cors_allowed_origins=frozenset(normalize_origin(o) for o in route.cors_allowed_origins or ()),
        injection_detection=route.injection_detection,
        sanitization=_resolved_sanitization(route.sanitization, service.kind),
        allow_anonymous=route.allow_anonymous,
        required_permissions=tuple(route.required_permissions or ()),
        tool_permissions=route.tool_permissions,
        service=service,
        upstream_batching=route.upstream_batching,
        fanout=route.fanout,
        fanout_services=_fanout_services(route, services_by_name or {}),
    )


def _fanout_services(route: Route, services_by_name: Mapping[str, ServiceConfig]) -> tuple[ServiceConfig, ...]:
    """The named services that exist; one deleted or renamed since the route was saved is left
    out (and logged) rather than failing the whole snapshot."""
    if not route.fanout:
        return ()
    found = []
    for name in route.fanout_services or ():
        if name in services_by_name:
            found.append(services_by_name[name])
        else:
            logger.warning("route %s fans out to %r, which is no longer a service; it is skipped", route.name, name)
    return tuple(found)


def build_snapshot() -> Snapshot:
    """Read every enabled route with its service and targets (three queries)."""
    services = {s.id: service_config(s) for s in Service.objects.prefetch_related("targets")}
    services_by_name = {s.name: s for s in services.values()}
    routes = []
    for route in Route.objects.filter(enabled=True):
        try:
            routes.append(route_config(route, services[route.service_id], services_by_name))
        except ValueError:  # saved around validation (raw ORM): one bad route must not stop all
            logger.exception("route %s has an invalid matcher and is ignored", route.name)
    routes.sort(key=lambda r: r.precedence)
    return Snapshot(
        routes=tuple(routes),
        services=services_by_name,
        uses_header_matchers=any(r.header_matchers for r in routes),
    )


_snapshot: ConfigCache[Snapshot] = ConfigCache(build_snapshot)


def get_snapshot() -> Snapshot:
    return _snapshot.get()
