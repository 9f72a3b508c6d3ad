"""The request path: every proxied request runs these stages, in this order.

Each stage is ``stage(exchange) -> HttpResponse | None``: ``None`` continues, a response answers
now, and a refusal raises a ``GatewayError`` that ``render_error`` shapes for the caller. The
exchange is recorded (access log, later metrics) whatever happens, and for a streamed answer
only when the stream closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import cast

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from gateway_project.errors import GatewayError, render_error
from gateway_project.exchange import Exchange
from performance.batching import dispatch_batch
from performance.cache import serve_from_cache, store_in_cache
from performance.capacity import take_capacity
from performance.stages import record_exchange
from routing import stages as routing_stages
from routing.matching import path_matches
from routing.snapshot import get_snapshot
from security import stages as security_stages
from authn import authorization, stages as authn_stages
from authn import list_filtering
from security import injection, sanitization, tool_schemas, validation
from security.api_keys import enforce_api_key_limits
from security.origin import check_origin
from security.ratelimit import enforce_default_ip_limit, enforce_rate_limits

logger = logging.getLogger(__name__)

Stage = Callable[[Exchange], HttpResponse | None]

REQUEST_STAGES: tuple[Stage, ...] = (
    # Cheap refusals first, from headers alone, before a single body byte is read.
    security_stages.enforce_request_limits,
    validation.reject_control_characters_in_headers,
    # The body is read once, bounded; everything later shares it.
    security_stages.read_body,
    # On the raw bytes, before json.loads could recurse itself to death on a 100000-deep body.
    validation.reject_deep_json,
    # Parsed once, before matching, because routes may match on JSON-RPC method and tool name.
    security_stages.parse_jsonrpc,
    # A fast 503 rather than a silent queue when streams hold every thread; after parsing, so
    # the refusal carries the request's id.
    take_capacity,
    # Before matching, so unrouted paths (scanners, guessing) are limited too.
    enforce_default_ip_limit,
    # Before matching: a route chosen by a lying Mcp-Name header would be the wrong route.
    security_stages.reject_header_body_mismatch,
    # Before matching: a batch is an envelope, never routed itself. Each item runs this whole
    # pipeline on its own (routed, authenticated, limited, authorized), so the stages below only
    # ever see single calls.
    dispatch_batch,
    routing_stages.find_route,
    # Who is asking (API key -> principal). After matching, so an unknown path is a 404, not a
    # 401; before every stage that limits or binds by principal.
    authn_stages.authenticate,
    # Needs the route (MCP routes only); free and stateless, so a forbidden browser request is
    # refused before it spends any rate-limit quota.
    check_origin,
    # Needs the route: route and tool scopes, and per-route policies, are known only after
    # matching. Before validation, so a flood of bad requests is limited too.
    enforce_rate_limits,
    # The key's own minute/hour/day windows; after the policies so the tightest header wins,
    # and after the Origin check so a refused browser request spends none of the key's quota.
    enforce_api_key_limits,
    # From here on, the route says what to expect: only MCP routes promise JSON-RPC.
    security_stages.reject_malformed_jsonrpc,
    validation.require_json_content_type,
    validation.validate_jsonrpc_message,
    injection.detect_injection,
    tool_schemas.validate_tool_arguments,
    # Last: every check above sees exactly what the client sent.
    sanitization.sanitize_inputs,
    # Route and tool permissions, on the validated request: a call that is refused as malformed
    # is never reported as forbidden (or the reverse).
    authorization.authorize,
    # Very last: a cached answer is served only to a request every check above let through, and
    # its key holds the principal's grants, known only after authentication.
    serve_from_cache,
)

# The last stage always answers: it forwards and relays the upstream's response.
TERMINAL_STAGE = routing_stages.forward

ResponseStage = Callable[[Exchange, HttpResponse | StreamingHttpResponse], None]

# Run on the upstream's answer (not on the gateway's own refusals), in order.
RESPONSE_STAGES: tuple[ResponseStage, ...] = (
    # Remembers each tool's inputSchema from tools/list answers, for validate_tool_arguments.
    tool_schemas.learn_from_answer,
    # After learning: schemas come from the whole list, the caller sees only what it may use.
    list_filtering.filter_listed_items,
    # Last: keeps the answer exactly as the client receives it (lists already filtered).
    store_in_cache,
)


class GatewayInternalError(GatewayError):
    """Raised in place of an unexpected exception, so even a bug answers in the caller's shape."""

    status = 500
    code = "internal_error"
    title = "The gateway failed to handle this request"


def handle(request: HttpRequest, *, jsonrpc_errors: bool = False) -> HttpResponse | StreamingHttpResponse:
    """Run the pipeline on ``request``; ``jsonrpc_errors`` for a JSON-RPC batch item, whose
    refusals must be JSON-RPC errors whatever the route."""
    exchange = Exchange(request=request, jsonrpc_errors=jsonrpc_errors)
    try:
        response = _run_stages(exchange)
    except GatewayError as error:
        response = _render(exchange, error)
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        response = _render(exchange, GatewayInternalError())
    exchange.status = response.status_code
    for name, value in exchange.response_headers.items():
        response[name] = value
    # The access log records every exchange; Django need not log 4xx/5xx answers again
    # (its log_response honours this flag).
    response._has_been_logged = True  # type: ignore[union-attr]
    if isinstance(response, StreamingHttpResponse):
        # The gateway only builds synchronous streams (WSGI), never async iterators.
        chunks = cast(Iterator[bytes], response.streaming_content)
        response.streaming_content = FinishOnClose(exchange, chunks)
    else:
        if not exchange.bytes_sent:
            exchange.bytes_sent = len(response.content)
        _finish(exchange)
    return response


def _run_stages(exchange: Exchange) -> HttpResponse | StreamingHttpResponse:
    for stage in REQUEST_STAGES:
        early_answer = stage(exchange)
        if early_answer is not None:
            return early_answer
    response = TERMINAL_STAGE(exchange)
    for response_stage in RESPONSE_STAGES:
        response_stage(exchange, response)
    return response


def _render(exchange: Exchange, error: GatewayError) -> HttpResponse:
    exchange.error_code = error.code
    return render_error(
        error,
        jsonrpc=_caller_speaks_jsonrpc(exchange),
        request_id=exchange.rpc_id,
        instance=exchange.request.path,
    )


def _caller_speaks_jsonrpc(exchange: Exchange) -> bool:
    """MCP route callers get JSON-RPC errors, also when refused before the route was matched."""
    if exchange.jsonrpc_errors:
        return True
    if exchange.route is not None:
        return exchange.is_mcp
    try:
        routes = get_snapshot().routes
    except Exception:  # the error being rendered may be the database being down
        return False
    path = exchange.request.path
    return any(route.service.speaks_mcp and path_matches(route, path) for route in routes)


def _finish(exchange: Exchange) -> None:
    """Run the exchange's end-of-life callbacks, then record it, whatever fails."""
    for callback in exchange.on_finish:
        try:
            callback()
        except Exception:  # a failing callback (state store down) must not lose the record
            logger.exception("an end-of-exchange callback failed")
    record_exchange(exchange)


class FinishOnClose:
    """Relays a stream's chunks and finishes the exchange exactly once, when the server closes
    the response (also when the client left before the first chunk was even asked for)."""

    def __init__(self, exchange: Exchange, chunks: Iterator[bytes]) -> None:
        self._exchange = exchange
        self._chunks = chunks
        self._closed = False

    def __iter__(self) -> FinishOnClose:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close_chunks = getattr(self._chunks, "close", None)
            if close_chunks is not None:
                close_chunks()
        finally:
            _finish(self._exchange)
