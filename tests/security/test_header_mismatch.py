"""Mcp-Method / Mcp-Name headers must agree with the body, or the request never leaves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_project.errors import JSONRPC_CONTENT_TYPE, JSONRPC_HEADER_MISMATCH
from tests.upstream_server import UpstreamServer

CALL_ADD = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "add", "arguments": {}}}
READ_FILE = {"jsonrpc": "2.0", "id": 6, "method": "resources/read", "params": {"uri": "file:///a"}}


def post(client: Any, message: Any, **headers: str) -> Any:
    return client.post("/mcp/echo", json.dumps(message), content_type="application/json", headers=headers)


@pytest.mark.parametrize(
    ("message", "headers"),
    [
        (CALL_ADD, {"Mcp-Method": "tools/list"}),
        (CALL_ADD, {"Mcp-Method": "tools/call", "Mcp-Name": "delete_everything"}),
        (CALL_ADD, {"Mcp-Name": "ADD"}),
        (READ_FILE, {"Mcp-Method": "resources/read", "Mcp-Name": "file:///b"}),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"Mcp-Name": "add"}),
        ([CALL_ADD], {"Mcp-Method": "tools/call"}),
    ],
)
def test_disagreeing_header_gets_400_and_never_reaches_upstream(
    client: Any, make_route: Any, upstream: UpstreamServer, message: Any, headers: dict[str, str]
) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    response = post(client, message, **headers)
    assert response.status_code == 400
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    body = json.loads(response.content)
    assert body["error"]["code"] == JSONRPC_HEADER_MISMATCH
    assert body["error"]["data"]["type"] == "header_mismatch"
    assert upstream.requests == []


def test_mismatch_error_carries_the_request_id(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    assert json.loads(post(client, CALL_ADD, **{"Mcp-Name": "echo"}).content)["id"] == 5


def test_header_cannot_steer_a_call_to_another_tools_route(client: Any, make_route: Any) -> None:
    """A route for tool 'echo' must not be reached by a body calling 'add' with Mcp-Name: echo."""
    guarded, general = UpstreamServer().start(), UpstreamServer().start()
    try:
        make_route("/mcp", guarded.url, kind="mcp", content_matchers={"name": "echo"}, priority=5)
        make_route("/mcp", general.url, kind="mcp")
        assert post(client, CALL_ADD, **{"Mcp-Name": "echo"}).status_code == 400
        assert guarded.requests == [] and general.requests == []
    finally:
        guarded.stop()
        general.stop()


@pytest.mark.parametrize(
    ("message", "headers"),
    [
        (CALL_ADD, {"Mcp-Method": "tools/call", "Mcp-Name": "add"}),
        (READ_FILE, {"Mcp-Method": "resources/read", "Mcp-Name": "file:///a"}),
        (CALL_ADD, {}),
    ],
)
def test_agreeing_or_absent_headers_are_forwarded(
    client: Any, make_route: Any, upstream: UpstreamServer, message: Any, headers: dict[str, str]
) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    assert post(client, message, **headers).status_code == 200
    assert len(upstream.requests) == 1
