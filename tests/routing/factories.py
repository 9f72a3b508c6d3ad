"""Frozen routing configs built directly, for tests of code that reads the snapshot."""

from __future__ import annotations

from typing import Any

from routing.snapshot import ServiceConfig, TargetConfig


def make_target(target_id: int = 1, *, weight: int = 1, port: int | None = None) -> TargetConfig:
    return TargetConfig(
        id=target_id,
        url=f"http://127.0.0.1:{port or 9000 + target_id}",
        scheme="http",
        host="127.0.0.1",
        port=port or 9000 + target_id,
        base_path="",
        weight=weight,
        healthy=True,
        auth_header="",
        auth_value="",
    )


def make_service(targets: tuple[TargetConfig, ...] = (), **overrides: Any) -> ServiceConfig:
    fields: dict[str, Any] = {
        "id": 1,
        "name": "svc",
        "kind": "http",
        "lb_policy": "round_robin",
        "connect_timeout": 5.0,
        "request_timeout": 30.0,
        "response_timeout": 60.0,
        "max_retries": 2,
        "retry_backoff_ms": 0,
        "retry_backoff_max_ms": 0,
        "retry_budget_percent": 20,
        "circuit_failure_threshold": 5,
        "circuit_window_seconds": 30.0,
        "circuit_recovery_seconds": 30.0,
        "circuit_half_open_probes": 1,
        "health_check_path": "",
        "health_check_interval": 10.0,
        "health_check_timeout": 5.0,
        "healthy_threshold": 2,
        "unhealthy_threshold": 3,
        "passive_failure_threshold": 3,
        "passive_ejection_seconds": 30.0,
        "targets": targets,
    }
    fields.update(overrides)
    return ServiceConfig(**fields)
