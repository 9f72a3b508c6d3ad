"""Security's pipeline stages: request limits, bounded body read, JSON-RPC parse and shape."""

from __future__ import annotations

from django.http import HttpResponse

from gateway_project.errors import (
    BadRequest,
    HeaderBodyMismatch,
    HeadersTooLarge,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    PayloadTooLarge,
    UriTooLong,
)
from gateway_project.exchange import Exchange
from security.conf import security_settings
from security.jsonrpc import parse_rpc_message
from security.sanitization import safe_excerpt

JSON_CONTENT_TYPES = ("application/json", "application/json-rpc")


def enforce_request_limits(exchange: Exchange) -> HttpResponse | None:
    """Refuse oversized URLs, header sets and declared bodies before reading anything."""
    meta = exchange.request.META
    url_bytes = len(meta.get("PATH_INFO", "")) + len(meta.get("QUERY_STRING", ""))
    if url_bytes > security_settings.max_url_bytes:
        raise UriTooLong(f"The URL is longer than {security_settings.max_url_bytes} bytes")
    header_count = 0
    header_bytes = 0
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            header_count += 1
            header_bytes += len(key) + len(value)
    if header_count > security_settings.max_header_count:
        raise HeadersTooLarge(f"More than {security_settings.max_header_count} request headers")
    if header_bytes > security_settings.max_header_bytes:
        raise HeadersTooLarge(f"Request headers exceed {security_settings.max_header_bytes} bytes")
    declared = meta.get("CONTENT_LENGTH") or ""
    if declared:
        if not declared.isdigit():
            raise BadRequest("Content-Length must be a non-negative integer")
        if int(declared) > security_settings.max_body_bytes:
            raise PayloadTooLarge(f"The body exceeds {security_settings.max_body_bytes} bytes")
    return None


def read_body(exchange: Exchange) -> HttpResponse | None:
    """Read the body once, never more than the limit (a chunked body has no declared size)."""
    limit = security_settings.max_body_bytes
    body = exchange.request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"The body exceeds {limit} bytes")
    exchange.body = body
    return None


def parse_jsonrpc(exchange: Exchange) -> HttpResponse | None:
    """Parse a JSON POST body once; later stages read ``exchange.rpc``."""
    request = exchange.request
    if request.method != "POST" or not exchange.body:
        return None
    content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if content_type in JSON_CONTENT_TYPES:
        exchange.rpc = parse_rpc_message(exchange.body)
    return None


def reject_malformed_jsonrpc(exchange: Exchange) -> HttpResponse | None:
    """On an MCP route, a body that is not JSON-RPC is answered here, never forwarded."""
    rpc = exchange.rpc
    if rpc is None or not exchange.is_mcp:
        return None
    if rpc.parse_error:
        raise JsonRpcParseError(rpc.parse_error)
    if rpc.invalid:
        raise JsonRpcInvalidRequest(rpc.invalid)
    return None


def reject_header_body_mismatch(exchange: Exchange) -> HttpResponse | None:
    """``Mcp-Method`` / ``Mcp-Name`` let intermediaries route without parsing, so they must say
    what the body says: a header must never smuggle a call past a route or a tool permission."""
    meta = exchange.request.META
    method_header = meta.get("HTTP_MCP_METHOD")
    name_header = meta.get("HTTP_MCP_NAME")
    if method_header is None and name_header is None:
        return None
    rpc = exchange.rpc
    if rpc is None or rpc.is_batch:
        raise HeaderBodyMismatch("Mcp-Method and Mcp-Name headers need a single JSON-RPC request body")
    if method_header is not None and method_header != rpc.method:
        raise HeaderBodyMismatch(
            f"Mcp-Method header {safe_excerpt(method_header)!r} does not match the body's method {safe_excerpt(rpc.method)!r}"
        )
    if name_header is not None and name_header != rpc.subject:
        raise HeaderBodyMismatch(
            f"Mcp-Name header {safe_excerpt(name_header)!r} does not match the body's {safe_excerpt(rpc.subject)!r}"
        )
    return None
