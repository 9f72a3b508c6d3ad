"""What the routing admin's add and change forms post, inlines' management forms included."""

from __future__ import annotations

from typing import Any

from routing.models import Service

CACHE_INLINE = "cache_policy"
RATE_LIMIT_INLINE = "RateLimitPolicy_routes"


def inline_rows(prefix: str, rows: list[dict[str, Any]], *, initial: int = 0, max_num: int = 1000) -> dict[str, Any]:
    """An inline formset's management form and its rows' fields, as the browser posts them."""
    data: dict[str, Any] = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": str(max_num),
    }
    for index, row in enumerate(rows):
        data.update({f"{prefix}-{index}-{field}": value for field, value in row.items()})
    return data


def service_form(name: str, targets: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "kind": "mcp",
        "lb_policy": "round_robin",
        "connect_timeout": "5",
        "request_timeout": "30",
        "response_timeout": "60",
        "max_retries": "2",
        "retry_backoff_ms": "100",
        "circuit_failure_threshold": "5",
        "circuit_recovery_seconds": "30",
        "retry_backoff_max_ms": "2000",
        "retry_budget_percent": "20",
        "circuit_window_seconds": "30",
        "circuit_half_open_probes": "1",
        "health_check_path": "",
        "health_check_interval": "10",
        "health_check_timeout": "5",
        "healthy_threshold": "2",
        "unhealthy_threshold": "3",
        "passive_failure_threshold": "3",
        "passive_ejection_seconds": "30",
    }
    defaults = {"url": "", "weight": "1", "enabled": "on", "upstream_auth_header": "", "upstream_auth_value": ""}
    data.update(inline_rows("targets", [{**defaults, **target} for target in targets]))
    data.update(overrides)
    return data


def route_form(
    service: Service,
    *,
    cache: dict[str, Any] | None = None,
    policy_ids: tuple[int, ...] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """A new route named "orders" at the prefix /orders, open, with its inlines (a cache policy
    and attached rate-limit policies) when given."""
    data: dict[str, Any] = {
        "name": "orders",
        "enabled": "on",
        "service": service.pk,
        "priority": "0",
        "path": "/orders",
        "path_match": "prefix",
        "methods": "[]",
        "header_matchers": "{}",
        "query_matchers": "{}",
        "content_matchers": "{}",
        "path_rewrite": "",
        "idempotent_tools": "[]",
        "injection_detection": "block",
        "cors_allowed_origins": "[]",
        "sanitization": "auto",
        "allow_anonymous": "on",
        "required_permissions": "[]",
        "connect_timeout": "",
        "request_timeout": "",
        "response_timeout": "",
        "fanout": "",
        "fanout_services": "[]",
    }
    data.update(inline_rows(CACHE_INLINE, [cache] if cache is not None else [], max_num=1))
    data.update(inline_rows(RATE_LIMIT_INLINE, [{"ratelimitpolicy": str(pk)} for pk in policy_ids]))
    data.update(overrides)
    return data
