"""JSON depth, JSON-RPC shape, known MCP params, and tool arguments against learned schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_project.errors import JSONRPC_INVALID_PARAMS
from security.tool_schemas import ToolSchemaCache, tool_schemas, tools_list_result_from_sse
from security.validation import json_nesting_depth, message_shape_problem, params_problem
from tests.upstream_server import UpstreamServer


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"1", 0),
        (b'{"a": [1, {"b": "[[[["}]}', 3),
        (b'["\\"[[[", [[]]]', 3),
        (b"[" * 100_000 + b"]" * 100_000, 100_000),
        (b'"unterminated [[[[', 0),
    ],
)
def test_json_nesting_depth_ignores_brackets_in_strings(body: bytes, depth: int) -> None:
    assert json_nesting_depth(body) == depth


def test_depth_scan_stops_just_past_the_limit() -> None:
    assert json_nesting_depth(b"[" * 100_000, stop_above=32) == 33


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "a", "method": "tools/list", "params": {}},
        {"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1, 2]},
        {"jsonrpc": "2.0", "id": 7, "result": {"roots": []}},
        {"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "no"}},
    ],
)
def test_requests_notifications_and_responses_are_valid(message: dict[str, Any]) -> None:
    assert message_shape_problem(message) == ""


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "result": {}},
        {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": "bad", "message": "x"}},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": True, "message": "x"}},
    ],
)
def test_malformed_responses_are_invalid(message: dict[str, Any]) -> None:
    assert message_shape_problem(message) != ""


@pytest.mark.parametrize(
    ("method", "params", "ok"),
    [
        ("tools/call", {"name": "add", "arguments": {"a": 1}}, True),
        ("tools/call", {"name": "add"}, True),
        ("tools/call", {"name": 3}, False),
        ("tools/call", None, False),
        ("tools/call", {"name": "add", "arguments": "a=1"}, False),
        ("prompts/get", {"name": "p", "arguments": {"k": "v"}}, True),
        ("prompts/get", {}, False),
        ("resources/read", {"uri": "file:///a"}, True),
        ("resources/read", {"uri": ["file:///a"]}, False),
        ("tools/list", None, True),
        ("vendor/custom", "anything", True),
    ],
)
def test_known_mcp_methods_need_their_params(method: str, params: Any, ok: bool) -> None:
    assert (params_problem(method, params) == "") is ok


ADD_TOOL = {
    "name": "add",
    "inputSchema": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
}


def test_schema_cache_learns_replaces_and_keeps_compiled_validators() -> None:
    cache = ToolSchemaCache()
    assert cache.learn_from_tools_list(1, {"jsonrpc": "2.0", "id": 1, "result": {"tools": [ADD_TOOL]}}) == 1
    first = cache.validator_for(1, "add")
    assert cache.schema_for(1, "add") == ADD_TOOL["inputSchema"]
    cache.learn_from_tools_list(1, {"tools": [dict(ADD_TOOL)]})
    assert cache.validator_for(1, "add") is first  # same schema: compiled once
    cache.learn_from_tools_list(1, {"tools": [{"name": "sub", "inputSchema": {"type": "object"}}]}, replaces_all=False)
    assert cache.schema_for(1, "add") is not None and cache.schema_for(1, "sub") is not None
    cache.learn_from_tools_list(1, {"tools": [{"name": "sub", "inputSchema": {"type": "object"}}]})
    assert cache.schema_for(1, "add") is None
    assert cache.schema_for(2, "sub") is None  # per route


def test_invalid_upstream_schema_is_kept_but_not_enforced() -> None:
    cache = ToolSchemaCache()
    cache.learn_from_tools_list(1, {"tools": [{"name": "bad", "inputSchema": {"type": 12}}]})
    assert cache.schema_for(1, "bad") == {"type": 12}
    assert cache.validator_for(1, "bad") is None


def test_sse_answer_yields_the_result_event() -> None:
    text = 'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\r\n\r\nevent: message\r\ndata: {"jsonrpc":"2.0","id":2,"result":{"tools":[]}}\r\n\r\n'
    assert tools_list_result_from_sse(text) == {"jsonrpc": "2.0", "id": 2, "result": {"tools": []}}


@pytest.fixture
def add_route(make_route: Any, upstream: UpstreamServer) -> Any:
    route = make_route("/mcp", upstream.url + "/echo", kind="mcp")
    tool_schemas.learn_from_tools_list(route.id, {"tools": [ADD_TOOL]})
    yield route
    tool_schemas.forget_route(route.id)


def call_add(client: Any, arguments: Any) -> Any:
    message = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "add", "arguments": arguments}}
    return client.post("/mcp", json.dumps(message), content_type="application/json")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"a": 1}, "Invalid arguments for tool 'add': missing required argument 'b'"),
        ({"a": 1, "b": "<two>"}, "Invalid arguments for tool 'add': argument 'b' must be of type integer"),
        ({"a": 1, "b": 2, "c<x>": 3}, "Invalid arguments for tool 'add': unexpected argument 'c&lt;x&gt;'"),
    ],
)
def test_arguments_failing_the_schema_get_32602_naming_the_argument(
    client: Any, add_route: Any, upstream: UpstreamServer, arguments: Any, message: str
) -> None:
    response = call_add(client, arguments)
    assert response.status_code == 400
    body = json.loads(response.content)
    assert body["id"] == 9
    assert body["error"]["code"] == JSONRPC_INVALID_PARAMS
    assert body["error"]["message"] == message
    assert b"<two>" not in response.content
    assert upstream.requests == []


def test_arguments_satisfying_the_schema_are_forwarded(client: Any, add_route: Any, upstream: UpstreamServer) -> None:
    assert call_add(client, {"a": 1, "b": 2}).status_code == 200
    assert len(upstream.requests) == 1


def test_a_tool_never_listed_is_forwarded_unchecked(client: Any, add_route: Any, upstream: UpstreamServer) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "other", "arguments": {"x": []}}}
    assert client.post("/mcp", json.dumps(message), content_type="application/json").status_code == 200
    assert len(upstream.requests) == 1
