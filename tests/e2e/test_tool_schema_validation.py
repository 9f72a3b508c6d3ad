"""The gateway learns each tool's inputSchema from tools/list and refuses bad arguments itself."""

from __future__ import annotations

from typing import Any

from tests.e2e.mcp_http import gateway_url, modern_headers, modern_message, post_jsonrpc

INVALID_PARAMS = -32602


def test_bad_arguments_are_refused_once_the_schema_was_listed(live_gateway: Any) -> None:
    """After tools/list (an SSE or JSON answer), add("x", 1) gets -32602 without reaching the tool."""
    url = gateway_url(live_gateway)
    listing = post_jsonrpc(url, modern_message(1, "tools/list"), modern_headers("tools/list"))
    assert listing.status == 200
    before = live_gateway.access_log().count("error=invalid_params")

    bad = modern_message(2, "tools/call", {"name": "add", "arguments": {"a": "not a number", "b": 1}})
    refused = post_jsonrpc(url, bad, modern_headers("tools/call", name="add"))

    assert refused.status == 400
    error = refused.json()
    assert error["id"] == 2
    assert error["error"]["code"] == INVALID_PARAMS
    assert "a" in error["error"]["message"]
    assert "not a number" not in error["error"]["message"]  # names the argument, never echoes it
    assert live_gateway.access_log().count("error=invalid_params") == before + 1

    good = modern_message(3, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 1}})
    answered = post_jsonrpc(url, good, modern_headers("tools/call", name="add"))
    assert answered.status == 200
    assert answered.messages()[0]["result"]["structuredContent"] == {"result": 3.0}
