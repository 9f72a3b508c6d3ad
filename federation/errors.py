"""The errors a virtual server answers with, under the gateway's one error tree.

Raised anywhere below ``federation.serving.serve``; the pipeline's one renderer turns them into
a JSON-RPC error object carrying the request's id, with these statuses (the 2026-07-28 table:
-32602 and -32600 are 400, -32601 is 404). Messages that echo client input are module
constants, so tests import them.
"""

from __future__ import annotations

from gateway_project.errors import (
    JSONRPC_INVALID_PARAMS,
    JSONRPC_INVALID_REQUEST,
    JSONRPC_METHOD_NOT_FOUND,
    JSONRPC_SERVER_ERROR,
    GatewayError,
)

UNKNOWN_TOOL = "Unknown tool: {name}"
UNKNOWN_PROMPT = "Unknown prompt: {name}"
UNKNOWN_RESOURCE = "Unknown resource: {uri}"
TOOL_HELD_BACK = "The tool {name} is held back until an operator approves its changed definition"
PINNED_ARGUMENT = "The argument {argument} of {name} is fixed by the gateway and cannot be set"
MEMBER_DOWN = "The server behind {name} ({member}) is unavailable: {reason}"
BAD_CURSOR = "Invalid cursor"
MISSING_SESSION = "Bad Request: Missing session ID"


class UnknownMethod(GatewayError):
    """Raised when a virtual server is asked a method it does not serve."""

    status = 404
    code = "method_not_found"
    title = "Method not found"
    jsonrpc_code = JSONRPC_METHOD_NOT_FOUND


class UnknownItem(GatewayError):
    """Raised when a call names a tool, prompt or resource the virtual server does not expose."""

    status = 400
    code = "unknown_item"
    title = "Unknown tool, prompt or resource"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


class ToolHeldBack(GatewayError):
    """Raised when a call names a tool whose changed definition awaits approval (policy block)."""

    status = 400
    code = "tool_held_back"
    title = "The tool is held back until approved"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


class PinnedArgumentRefused(GatewayError):
    """Raised when a client sends a value for an argument the gateway pins."""

    status = 400
    code = "pinned_argument"
    title = "The argument is fixed by the gateway"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


class InvalidCursor(GatewayError):
    """Raised when a list request's cursor is not one the gateway handed out."""

    status = 400
    code = "invalid_cursor"
    title = BAD_CURSOR
    jsonrpc_code = JSONRPC_INVALID_PARAMS


class MissingSession(GatewayError):
    """Raised when a 2025-era request other than initialize comes without an Mcp-Session-Id."""

    status = 400
    code = "missing_session"
    title = MISSING_SESSION
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class VirtualServerGone(GatewayError):
    """Raised when a route still points at a virtual server that was disabled or deleted."""

    status = 404
    code = "virtual_server_not_found"
    title = "No virtual server is served here"


class MemberUnavailable(GatewayError):
    """Raised when a member could not be reached at all (no target, connection refused): the
    request was not sent."""

    status = 502
    code = "member_unavailable"
    title = "The member server is unavailable"
    jsonrpc_code = JSONRPC_SERVER_ERROR


class MemberFailed(GatewayError):
    """Raised when a member broke off or answered something that is not MCP after the request
    was sent: it may have run."""

    status = 502
    code = "member_failed"
    title = "The member server failed"
    jsonrpc_code = JSONRPC_SERVER_ERROR


class MemberTimeout(GatewayError):
    """Raised when a member did not answer within its service's timeouts."""

    status = 504
    code = "member_timeout"
    title = "The member server did not answer in time"
    jsonrpc_code = JSONRPC_SERVER_ERROR
