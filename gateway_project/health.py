"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse

from gateway_project.state import StateStoreUnavailable, get_state_store


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and answering."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: the database and the state store both answer."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready; the name of the part matters
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        get_state_store().ping()
        checks["state_store"] = "ok"
    except StateStoreUnavailable as exc:
        checks["state_store"] = f"unavailable: {exc}"
    failing = [part for part, result in checks.items() if result != "ok"]
    status = 503 if failing else 200
    return JsonResponse({"status": "ready" if not failing else "unavailable", "failing": failing, "checks": checks}, status=status)
