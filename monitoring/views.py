"""GET /metrics: the Prometheus exposition (``prometheus.py``), for staff or a scrape token.

Not open like most exporters: the labels name every route, target, API key and tool, and the
counts tell who calls what how often. A request may read it with either
- a staff session (an operator logged in to the admin, looking from the browser), or
- ``Authorization: Bearer <GATEWAY_METRICS_TOKEN>`` when that setting is set (Prometheus'
  ``authorization`` / ``bearer_token`` scrape option).
Anyone else gets 401 with a ``WWW-Authenticate: Bearer`` challenge (403 for a logged-in user
who is not staff); errors are problem+json like every other gateway answer.

This path is the gateway's own endpoint (before the proxy's catch-all), so scrapes are never
proxied exchanges and never count in the metrics they read.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway_project.errors import GatewayError, MethodNotAllowed, render_error
from gateway_project.state import StateStoreUnavailable
from monitoring.conf import monitoring_settings
from monitoring.prometheus import render_metrics

WWW_AUTHENTICATE_HEADER = "WWW-Authenticate"
CHALLENGE = 'Bearer realm="metrics"'
READ_METHODS = ("GET", "HEAD")


class MetricsCredentialRequired(GatewayError):
    """Raised when /metrics is asked for without a staff session or the metrics token."""

    status = 401
    code = "metrics_credential_required"
    title = "Authentication required"

    def __init__(self) -> None:
        super().__init__(
            "Log in to the admin as staff, or send Authorization: Bearer <GATEWAY_METRICS_TOKEN>",
            headers={WWW_AUTHENTICATE_HEADER: CHALLENGE},
        )


class MetricsForbidden(GatewayError):
    """Raised when a logged-in user who is not staff asks for /metrics."""

    status = 403
    code = "forbidden"
    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__("Only staff users may read the metrics")


class MetricsUnavailable(GatewayError):
    """Raised when the metrics store cannot be reached for a scrape."""

    status = 503
    code = "metrics_unavailable"
    title = "Metrics are unavailable right now"

    def __init__(self) -> None:
        super().__init__(
            "The metrics store cannot be reached; the scrape can be retried", headers={"Retry-After": "10"}
        )


# Read-only and token-authenticated: a CSRF refusal would only turn a 405 into Django's HTML page.
@csrf_exempt
def metrics(request: HttpRequest) -> HttpResponse:
    try:
        if request.method not in READ_METHODS:
            raise MethodNotAllowed("/metrics answers GET and HEAD", headers={"Allow": ", ".join(READ_METHODS)})
        require_metrics_reader(request)
        try:
            body, content_type = render_metrics(request.headers.get("Accept", ""))
        except StateStoreUnavailable:
            raise MetricsUnavailable() from None
    except GatewayError as error:
        return render_error(error, jsonrpc=False, instance=request.path)
    return HttpResponse(body, content_type=content_type)


def require_metrics_reader(request: HttpRequest) -> None:
    """Raise unless the request carries the metrics token or comes from a staff session."""
    if _has_metrics_token(request):
        return
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_staff and user.is_active:
            return
        raise MetricsForbidden()
    raise MetricsCredentialRequired()


def _has_metrics_token(request: HttpRequest) -> bool:
    token = monitoring_settings.metrics_token
    if not token:
        return False
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())
