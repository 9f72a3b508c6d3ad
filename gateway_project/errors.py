"""The gateway's own errors: one exception tree, one renderer per audience.

A stage refuses a request by raising a ``GatewayError``; the pipeline turns it into a response
in exactly one place (``render_error``). On an MCP route the caller is a JSON-RPC client and
gets a JSON-RPC error object carrying its request ``id``; everyone else gets
``application/problem+json`` (RFC 9457). Never Django's HTML error page.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
JSONRPC_CONTENT_TYPE = "application/json"

# JSON-RPC 2.0 reserves -32000..-32099 for implementation-defined server errors.
JSONRPC_PARSE_ERROR = -32700
JSONRPC_INVALID_REQUEST = -32600
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INVALID_PARAMS = -32602
JSONRPC_SERVER_ERROR = -32000
# The MCP 2026-07-28 code for an Mcp-Method / Mcp-Name header that disagrees with the body.
JSONRPC_HEADER_MISMATCH = -32020


class GatewayError(Exception):
    """Root of every error the gateway itself answers with."""

    status = 500
    code = "gateway_error"
    title = "Gateway error"
    jsonrpc_code = JSONRPC_SERVER_ERROR

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)


class BadRequest(GatewayError):
    """Raised when the request is malformed (bad headers, bad URL)."""

    status = 400
    code = "bad_request"
    title = "Bad request"
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class JsonRpcParseError(GatewayError):
    """Raised when an MCP route receives a body that is not JSON."""

    status = 400
    code = "parse_error"
    title = "Parse error"
    jsonrpc_code = JSONRPC_PARSE_ERROR


class JsonRpcInvalidRequest(GatewayError):
    """Raised when an MCP route receives JSON that is not a JSON-RPC message."""

    status = 400
    code = "invalid_request"
    title = "Invalid Request"
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class HeaderBodyMismatch(GatewayError):
    """Raised when an Mcp-Method or Mcp-Name header disagrees with the JSON-RPC body."""

    status = 400
    code = "header_mismatch"
    title = "Header does not match the request body"
    jsonrpc_code = JSONRPC_HEADER_MISMATCH


class RouteNotFound(GatewayError):
    """Raised when no enabled route matches the request."""

    status = 404
    code = "route_not_found"
    title = "No route matches this request"


class MethodNotAllowed(GatewayError):
    """Raised when a route matches the path but not the HTTP method."""

    status = 405
    code = "method_not_allowed"
    title = "Method not allowed on this route"


class PayloadTooLarge(GatewayError):
    """Raised when the body exceeds the gateway's size limit."""

    status = 413
    code = "payload_too_large"
    title = "Request body too large"
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class UriTooLong(GatewayError):
    """Raised when the request URL exceeds the gateway's limit."""

    status = 414
    code = "uri_too_long"
    title = "Request URL too long"


class HeadersTooLarge(GatewayError):
    """Raised when there are too many request headers or they are too large."""

    status = 431
    code = "headers_too_large"
    title = "Request headers too large"


class UpstreamUnavailable(GatewayError):
    """Raised when no upstream target could be reached (connect error, reset, refused)."""

    status = 502
    code = "upstream_unavailable"
    title = "Upstream unavailable"


class UpstreamConnectFailed(UpstreamUnavailable):
    """Raised when no connection to the target could be opened: nothing was sent."""

    code = "upstream_unavailable"


class NoTargetAvailable(GatewayError):
    """Raised when the route's service has no enabled target to send to."""

    status = 503
    code = "no_target_available"
    title = "No upstream target available"


class UpstreamTimeout(GatewayError):
    """Raised when the upstream did not connect or answer within the service's timeouts."""

    status = 504
    code = "upstream_timeout"
    title = "Upstream timed out"


def render_error(error: GatewayError, *, jsonrpc: bool, request_id: Any = None, instance: str = "") -> HttpResponse:
    """Shape ``error`` for its caller: a JSON-RPC error object or problem+json."""
    if jsonrpc:
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {
                "code": error.jsonrpc_code,
                "message": error.detail,
                "data": {"status": error.status, "type": error.code},
            },
        }
        content_type = JSONRPC_CONTENT_TYPE
    else:
        body = {
            "type": f"urn:mcp-gateway:error:{error.code}",
            "title": error.title,
            "status": error.status,
            "detail": error.detail,
            "instance": instance,
        }
        content_type = PROBLEM_CONTENT_TYPE
    response = HttpResponse(json.dumps(body), status=error.status, content_type=content_type)
    for name, value in error.headers.items():
        response[name] = value
    return response


class UpstreamConnectTimeout(UpstreamTimeout):
    """Raised when the connection to the target did not open in time: nothing was sent."""
