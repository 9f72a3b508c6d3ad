"""2026-07-28 raw requests: the gateway returns exactly what the demo server answers when asked directly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.mcp_http import (
    HEADER_MISMATCH,
    METHOD_NOT_FOUND,
    MODERN_VERSION,
    STREAMABLE_ACCEPT,
    assert_relayed_intact,
    direct_url,
    gateway_url,
    modern_headers,
    modern_message,
    open_stream,
    post_jsonrpc,
    read_events_as_they_arrive,
    request,
)


@pytest.fixture
def urls(live_gateway: Any, demo_server_port: int) -> tuple[str, str]:
    """(through the gateway, straight to the demo server)."""
    return gateway_url(live_gateway), direct_url(demo_server_port)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_modern_get_and_delete_get_the_upstreams_own_405(urls: tuple[str, str], method: str) -> None:
    """A 2026-07-28 server only takes POST: GET and DELETE get its 405 with Allow: POST, unchanged."""
    via_gateway_url, upstream_url = urls
    headers = {"Accept": STREAMABLE_ACCEPT, "MCP-Protocol-Version": MODERN_VERSION}

    direct = request(method, upstream_url, headers)
    via_gateway = request(method, via_gateway_url, headers)

    assert direct.status == 405  # what the SDK server does; if this changes, the test premise did
    assert via_gateway.status == 405
    assert via_gateway.headers.get("allow") == "POST"
    assert_relayed_intact(via_gateway, direct)


def test_mcp_method_header_disagreeing_with_body_is_refused_by_the_gateway(live_gateway: Any, urls: tuple[str, str]) -> None:
    """A disagreeing Mcp-Method never reaches the upstream: the gateway answers 400 HEADER_MISMATCH itself."""
    via_gateway_url, _ = urls
    before = live_gateway.access_log().count("error=header_mismatch")
    via_gateway = post_jsonrpc(via_gateway_url, modern_message(7, "tools/list"), modern_headers("prompts/list"))

    assert via_gateway.status == 400
    error = via_gateway.json()
    assert error["id"] == 7
    assert error["error"]["code"] == HEADER_MISMATCH
    assert "Mcp-Method" in error["error"]["message"]
    assert live_gateway.access_log().count("error=header_mismatch") == before + 1


def test_mcp_name_header_disagreeing_with_tool_name_is_refused_by_the_gateway(urls: tuple[str, str]) -> None:
    """A Mcp-Name naming another tool than the body gets the gateway's own 400 HEADER_MISMATCH."""
    via_gateway_url, _ = urls
    message = modern_message(8, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    via_gateway = post_jsonrpc(via_gateway_url, message, modern_headers("tools/call", name="echo"))

    assert via_gateway.status == 400
    assert via_gateway.json()["id"] == 8
    assert via_gateway.json()["error"]["code"] == HEADER_MISMATCH
    assert "Mcp-Name" in via_gateway.json()["error"]["message"]


def test_agreeing_routing_headers_reach_upstream_so_the_call_succeeds(urls: tuple[str, str]) -> None:
    """With MCP-Protocol-Version, Mcp-Method and Mcp-Name all forwarded, the upstream accepts and answers the call."""
    via_gateway_url, upstream_url = urls
    message = modern_message(9, "tools/call", {"name": "add", "arguments": {"a": 20, "b": 22}})
    headers = modern_headers("tools/call", name="add")

    direct = post_jsonrpc(upstream_url, message, headers)
    via_gateway = post_jsonrpc(via_gateway_url, message, headers)

    assert via_gateway.status == 200
    [answer] = via_gateway.messages()
    assert answer["id"] == 9
    assert answer["result"]["structuredContent"] == {"result": 42.0}
    assert_relayed_intact(via_gateway, direct)


def test_unknown_method_gets_upstreams_404_method_not_found(urls: tuple[str, str]) -> None:
    """A method the upstream does not know gets its own 404 with a JSON-RPC Method-not-found body."""
    via_gateway_url, upstream_url = urls
    message = modern_message(10, "no/such/method")
    headers = modern_headers("no/such/method")

    direct = post_jsonrpc(upstream_url, message, headers)
    via_gateway = post_jsonrpc(via_gateway_url, message, headers)

    assert via_gateway.status == 404
    assert via_gateway.json()["error"]["code"] == METHOD_NOT_FOUND
    assert_relayed_intact(via_gateway, direct)


def countdown_over_sse(url: str, steps: int, delay_seconds: float) -> Any:
    """Call countdown with a progress token, so the upstream answers with an event stream; read it as it arrives."""
    message = modern_message(
        11,
        "tools/call",
        {"name": "countdown", "arguments": {"steps": steps, "delay_seconds": delay_seconds}},
        progressToken="e2e-progress",
    )
    headers = {
        "Accept": STREAMABLE_ACCEPT,
        "Content-Type": "application/json",
        **modern_headers("tools/call", "countdown"),
    }
    response = open_stream("POST", url, headers, json.dumps(message).encode())
    return response, read_events_as_they_arrive(response)


def test_sse_answer_arrives_through_gateway_as_the_upstreams_event_stream(urls: tuple[str, str]) -> None:
    """An upstream SSE answer arrives as text/event-stream: each progress event, then the result, byte-exact."""
    via_gateway_url, upstream_url = urls
    steps = 3

    direct_response, direct = countdown_over_sse(upstream_url, steps, 0.05)
    response, via_gateway = countdown_over_sse(via_gateway_url, steps, 0.05)

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    messages = [message for _, message in via_gateway.arrivals]
    progress = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
    assert progress == list(range(1, steps + 1))
    assert [m.get("method") for m in messages[:steps]] == ["notifications/progress"] * steps
    assert messages[-1]["id"] == 11
    assert messages[-1]["result"]["structuredContent"] == {"result": f"counted down {steps} steps"}
    assert len(messages) == steps + 1
    assert direct_response.headers["Content-Type"] == response.headers["Content-Type"]
    assert via_gateway.raw == direct.raw


def test_sse_events_are_relayed_as_they_happen_not_buffered_until_the_end(urls: tuple[str, str]) -> None:
    """The first progress event reaches the client while the tool is still counting, well before the result."""
    via_gateway_url, _ = urls
    steps, delay = 3, 0.4  # the tool runs about steps * delay = 1.2 s after its first event

    _, via_gateway = countdown_over_sse(via_gateway_url, steps, delay)

    first_arrival, first = via_gateway.arrivals[0]
    last_arrival, last = via_gateway.arrivals[-1]
    assert first["method"] == "notifications/progress"
    assert "result" in last
    # Buffering would deliver everything at once (gap ~0); streaming leaves about 1.2 s between them.
    # The bound is one step's delay: only a first event held up 0.8 s longer than the last could fail it.
    assert last_arrival - first_arrival >= delay
