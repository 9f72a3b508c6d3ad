"""Input validation: header characters, JSON depth, Content-Type and the JSON-RPC 2.0 shape.

Every check reads what earlier stages already have (``exchange.body``, ``exchange.rpc``); the
body is never parsed a second time. Stages, in pipeline order (see ``RECOMMENDED_ORDER`` in the
report / ``tests/security/test_bad_input_battery.py``):

- ``reject_control_characters_in_headers`` — after the size limits: a CR, LF or NUL in a header
  value could split the header block on the way to the upstream;
- ``reject_deep_json`` — before ``parse_jsonrpc``: ``json.loads`` recurses per nesting level
  and raises ``RecursionError`` near 1000 levels, so depth is measured on the raw bytes first,
  with no recursion at all;
- ``require_json_content_type`` and ``validate_jsonrpc_message`` — after routing, because only
  MCP routes promise JSON-RPC; plain HTTP bodies are the upstream's business.

Example: ``json_nesting_depth(b'{"a": [1, {"b": "[["}]}')`` is 3 (brackets in strings don't count).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django.http import HttpResponse
from django.utils.http import parse_header_parameters

from gateway_project.errors import (
    JSONRPC_INVALID_PARAMS,
    JSONRPC_INVALID_REQUEST,
    BadRequest,
    GatewayError,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
)
from gateway_project.exchange import Exchange
from security.conf import security_settings
from security.sanitization import safe_excerpt
from security.stages import JSON_CONTENT_TYPES

MCP_CONTENT_TYPE = "application/json"
JSONRPC_VERSION = "2.0"


class UnsupportedMediaType(GatewayError):
    """Raised when a POST to an MCP route is not ``application/json`` (UTF-8)."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported Media Type"
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class JsonTooDeep(GatewayError):
    """Raised when a JSON body nests deeper than ``GATEWAY_MAX_JSON_DEPTH``."""

    status = 400
    code = "json_too_deep"
    title = "JSON nested too deeply"
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class InvalidParams(GatewayError):
    """Raised when a known MCP method's params (or a tool's arguments) are malformed."""

    status = 400
    code = "invalid_params"
    title = "Invalid params"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


class InvalidHeaderValue(BadRequest):
    """Raised when a request header name or value carries a control character (CR, LF, NUL...)."""

    code = "invalid_header"
    title = "Invalid request header"


# RFC 9110 field values: visible characters, space and tab only. Anything else in a header
# could end the header block early (CRLF) or be handled differently by the next hop (NUL).
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_WSGI_HEADER_KEYS = ("CONTENT_TYPE", "CONTENT_LENGTH")


def reject_control_characters_in_headers(exchange: Exchange) -> HttpResponse | None:
    """Refuse header names or values with control characters; the value is never echoed."""
    for key, value in exchange.request.META.items():
        if not (key.startswith("HTTP_") or key in _WSGI_HEADER_KEYS) or not isinstance(value, str):
            continue
        if _HEADER_CONTROL.search(key) or _HEADER_CONTROL.search(value):
            name = key.removeprefix("HTTP_").replace("_", "-").title()
            raise InvalidHeaderValue(f"Header {safe_excerpt(name)} contains a control character")
    return None


# One JSON string token, escapes included; an unterminated string runs to the end. Possessive
# quantifiers keep this linear on hostile input (no backtracking into a string's body).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\[\s\S]?)*+"?')
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_nesting_depth(body: bytes, *, stop_above: int | None = None) -> int:
    """The deepest ``[``/``{`` nesting in ``body``, counted without parsing or recursion.

    Stops counting once the depth passes ``stop_above`` (the answer is then ``stop_above + 1``).
    Malformed JSON gets a best-effort number; ``json.loads`` reports the real problem later.
    """
    if stop_above is not None and body.count(b"[") + body.count(b"{") <= stop_above:
        return stop_above  # cannot be deeper than the number of openers: skip the scan
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_A_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        else:
            depth -= 1
    return deepest


def _media_type(exchange: Exchange) -> tuple[str, dict[str, str]]:
    media_type, params = parse_header_parameters(exchange.request.META.get("CONTENT_TYPE", ""))
    return media_type.strip().lower(), params


def reject_deep_json(exchange: Exchange) -> HttpResponse | None:
    """Refuse a JSON body nested deeper than the limit, before anything parses it."""
    request = exchange.request
    if request.method != "POST" or not exchange.body:
        return None
    if _media_type(exchange)[0] not in JSON_CONTENT_TYPES:  # exactly what parse_jsonrpc parses
        return None
    limit = security_settings.max_json_depth
    if json_nesting_depth(exchange.body, stop_above=limit) > limit:
        raise JsonTooDeep(f"The JSON body is nested deeper than {limit} levels")
    return None


def require_json_content_type(exchange: Exchange) -> HttpResponse | None:
    """An MCP POST carries JSON-RPC, so it must say ``application/json`` (and UTF-8, RFC 8259)."""
    if not exchange.is_mcp or exchange.request.method != "POST":
        return None
    media_type, params = _media_type(exchange)
    if media_type != MCP_CONTENT_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {MCP_CONTENT_TYPE}")
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("JSON must be encoded as UTF-8")
    if not exchange.body:
        raise JsonRpcParseError("Parse error: the body is empty")
    return None


def validate_jsonrpc_message(exchange: Exchange) -> HttpResponse | None:
    """On MCP routes: JSON-RPC 2.0 shape (-32600) and the params of known MCP methods (-32602).

    Responses (``result``/``error`` objects answering a server's request) are valid messages.
    Batches are only checked for being arrays of objects; their other rules live elsewhere.
    """
    rpc = exchange.rpc
    if rpc is None or not exchange.is_mcp or rpc.parse_error or rpc.invalid:
        return None
    if rpc.is_batch:
        for number, item in enumerate(rpc.payload):
            if not isinstance(item, dict):
                raise JsonRpcInvalidRequest(f"Invalid Request: batch item {number} is not an object")
        return None
    message: dict[str, Any] = rpc.payload
    if "id" in message and not is_valid_id(message["id"]):
        exchange.rpc = dataclasses.replace(rpc, id=None)  # an unreadable id is answered with null
        raise JsonRpcInvalidRequest('Invalid Request: "id" must be a string, a number or null')
    problem = message_shape_problem(message)
    if problem:
        raise JsonRpcInvalidRequest(f"Invalid Request: {problem}")
    problem = params_problem(message.get("method"), message.get("params"))
    if problem:
        raise InvalidParams(f"Invalid params: {problem}")
    return None


def is_valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def message_shape_problem(message: dict[str, Any]) -> str:
    """What makes ``message`` not a JSON-RPC 2.0 request, notification or response ('' if fine)."""
    if message.get("jsonrpc") != JSONRPC_VERSION:
        return '"jsonrpc" must be the string "2.0"'
    if "method" in message:
        if not isinstance(message["method"], str):
            return '"method" must be a string'
        if "params" in message and not isinstance(message["params"], (dict, list)):
            return '"params" must be an object or an array'
        return ""
    if "result" not in message and "error" not in message:
        return 'a request needs a string "method"'
    if "id" not in message:
        return 'a response needs an "id"'
    if "result" in message and "error" in message:
        return 'a response has either "result" or "error", not both'
    if "error" in message:
        error = message["error"]
        if not isinstance(error, dict) or not _is_int(error.get("code")) or not isinstance(error.get("message"), str):
            return '"error" must be an object with an integer "code" and a string "message"'
    return ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_field(params: Any, key: str) -> bool:
    return isinstance(params, dict) and isinstance(params.get(key), str)


def _optional_object(params: Any, key: str) -> bool:
    return not isinstance(params, dict) or key not in params or isinstance(params[key], dict)


def params_problem(method: Any, params: Any) -> str:
    """What is wrong with a known MCP method's params ('' if fine or the method is unknown)."""
    if method == "tools/call" or method == "prompts/get":
        if not _string_field(params, "name"):
            return f'{method} needs a string "params.name"'
        if not _optional_object(params, "arguments"):
            return f'"params.arguments" of {method} must be an object'
    elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        if not _string_field(params, "uri"):
            return f'{method} needs a string "params.uri"'
    return ""
