"""The Origin check on MCP routes: DNS-rebinding protection from the MCP Streamable HTTP spec.

A browser page on another site can make the browser send requests to a gateway it can reach
(``localhost``, an intranet host). Browsers always say where such a request comes from in
``Origin``; an MCP route refuses any origin that is neither in the allowed origins
(``CORS_ALLOWED_ORIGINS``, the same list CORS uses) nor the gateway's own, so the request is
never forwarded. Clients that are not browsers (the MCP SDKs, curl) send no ``Origin`` and pass.

"The gateway's own" is the request's ``Host``, which Django has already checked against
``ALLOWED_HOSTS``: that check is what defeats a rebound DNS name (a page on ``evil.example``
whose name now points at the gateway sends ``Host: evil.example``), so ``ALLOWED_HOSTS`` must
not be ``*`` where the gateway is reachable from browsers.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from gateway_project.errors import GatewayError
from gateway_project.exchange import Exchange
from security.conf import security_settings

ORIGIN_HEADER = "HTTP_ORIGIN"
DEFAULT_PORTS = {"http": "80", "https": "443"}


class ForbiddenOrigin(GatewayError):
    """Raised when a request to an MCP route carries an Origin that is not allowed."""

    status = 403
    code = "forbidden_origin"
    title = "Origin not allowed"


def check_origin(exchange: Exchange) -> HttpResponse | None:
    """On MCP routes, refuse a request whose ``Origin`` is neither allowed nor the gateway's own."""
    if not exchange.is_mcp:
        return None
    origin = exchange.request.META.get(ORIGIN_HEADER)
    if origin is None:
        return None
    normalized = normalize_origin(origin)
    if normalized in allowed_origins(tuple(security_settings.allowed_origins)):
        return None
    if exchange.route is not None and normalized and normalized in exchange.route.cors_allowed_origins:
        return None
    if _is_same_origin(exchange, origin):
        return None
    raise ForbiddenOrigin(f"Origin {origin!r} is not allowed on this route")


def normalize_origin(origin: str) -> str:
    """``scheme://host:port``, lower-cased, with the scheme's default port written out, so
    ``https://A.example`` and ``https://a.example:443`` compare equal. Not a URL: ``""``."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


@lru_cache(maxsize=8)
def allowed_origins(configured: tuple[str, ...]) -> frozenset[str]:
    """The configured origins, normalized once per distinct setting (not per request)."""
    return frozenset(normalized for normalized in map(normalize_origin, configured) if normalized)


def _is_same_origin(exchange: Exchange, origin: str) -> bool:
    """The Origin names the host this request was sent to. The scheme is the Origin's own:
    behind a TLS-terminating load balancer the gateway itself sees http."""
    try:
        host = exchange.request.get_host()
    except DisallowedHost:
        return False
    normalized = normalize_origin(origin)
    if not normalized:
        return False
    scheme = normalized.split("://", 1)[0]
    return normalized == normalize_origin(f"{scheme}://{host}")


def route_allows_cors_origin(sender: object, request: HttpRequest, **kwargs: object) -> bool:
    """django-cors-headers' ``check_request_enabled`` hook: a route's own extra origins.

    CORS runs as middleware, before the pipeline has matched a route, so the route is looked
    up here by path alone (the snapshot: no query), first in precedence order.
    """
    from routing.matching import path_matches
    from routing.snapshot import get_snapshot

    origin = normalize_origin(request.headers.get("Origin", ""))
    if not origin:
        return False
    for route in get_snapshot().routes:
        if path_matches(route, request.path):
            return origin in route.cors_allowed_origins
    return False
