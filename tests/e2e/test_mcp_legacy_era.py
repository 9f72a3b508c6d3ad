"""The 2025 session era (initialize handshake + Mcp-Session-Id) through a live gateway: SDK client and raw HTTP."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from tests.e2e.mcp_http import (
    LEGACY_VERSION,
    SESSION_NOT_FOUND,
    Answer,
    assert_relayed_intact,
    count_access_lines,
    direct_url,
    gateway_url,
    open_stream,
    post_jsonrpc,
    request,
    tool_names,
    wait_for_access_lines,
)

CLIENT_TIMEOUT_SECONDS = 30
MADE_UP_SESSION_ID = "0123456789abcdef0123456789abcdef"

# --- (a) the SDK client in legacy mode -----------------------------------------------------------


def test_legacy_client_handshakes_through_gateway_and_lists_tools(live_gateway: Any) -> None:
    """mode='legacy' does the initialize handshake through the gateway and sees all demo tools."""
    initializes_before = count_access_lines(live_gateway, rpc="initialize", status=200)
    initialized_before = count_access_lines(live_gateway, rpc="notifications/initialized", status=202)

    async def main() -> tuple[str, set[str]]:
        with anyio.fail_after(CLIENT_TIMEOUT_SECONDS):
            async with Client(gateway_url(live_gateway), mode="legacy") as client:
                listing = await client.list_tools()
                return client.protocol_version, {tool.name for tool in listing.tools}

    version, names = anyio.run(main)

    assert version in HANDSHAKE_PROTOCOL_VERSIONS
    assert {"echo", "add", "countdown", "fail"} <= names
    initializes = wait_for_access_lines(live_gateway, initializes_before + 1, rpc="initialize", status=200)
    assert len(initializes) == initializes_before + 1
    initialized = wait_for_access_lines(
        live_gateway, initialized_before + 1, rpc="notifications/initialized", status=202
    )
    assert len(initialized) == initialized_before + 1


def test_legacy_client_calls_tools_and_gets_progress_before_result(live_gateway: Any) -> None:
    """In one legacy session: add sums, countdown's progress all precedes its result, fail is a tool error."""
    steps = 3
    events: list[tuple[str, Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append(("progress", progress))

    async def main() -> tuple[Any, Any]:
        with anyio.fail_after(CLIENT_TIMEOUT_SECONDS):
            async with Client(gateway_url(live_gateway), mode="legacy") as client:
                added = await client.call_tool("add", {"a": 40, "b": 2})
                result = await client.call_tool(
                    "countdown", {"steps": steps, "delay_seconds": 0.1}, progress_callback=on_progress
                )
                events.append(("result", result))
                failed = await client.call_tool("fail", {})
                return added, failed

    added, failed = anyio.run(main)

    assert added.structured_content == {"result": 42.0}
    assert events[:-1] == [("progress", float(step)) for step in range(1, steps + 1)]
    assert events[-1][0] == "result"
    assert events[-1][1].content[0].text == f"counted down {steps} steps"
    assert failed.is_error is True


# --- (b) the raw legacy flow, through the gateway and straight to the demo server -----------------


def legacy_flow(url: str) -> dict[str, Answer]:
    """Run the whole 2025 session lifecycle with raw HTTP against ``url``; return each step's answer."""
    answers: dict[str, Answer] = {}
    answers["initialize"] = post_jsonrpc(
        url,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "raw-e2e", "version": "1.0"},
            },
        },
    )
    session_id = answers["initialize"].headers.get("mcp-session-id", "")
    in_session = {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY_VERSION}

    answers["initialized"] = post_jsonrpc(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, in_session)
    answers["tools/list"] = post_jsonrpc(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, in_session)

    stream = open_stream("GET", url, {"Accept": "text/event-stream", **in_session})
    try:  # headers only: the server stream stays open until the session ends
        answers["get"] = Answer(stream.status, {k.lower(): v for k, v in stream.headers.items()}, b"")
    finally:
        stream.close()

    answers["delete"] = request("DELETE", url, in_session)
    answers["after delete"] = post_jsonrpc(url, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, in_session)
    answers["made-up session"] = post_jsonrpc(
        url,
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
        {"Mcp-Session-Id": MADE_UP_SESSION_ID, "MCP-Protocol-Version": LEGACY_VERSION},
    )
    return answers


@pytest.fixture(scope="module")
def flow_via_gateway(live_gateway: Any) -> dict[str, Answer]:
    return legacy_flow(gateway_url(live_gateway))


@pytest.fixture(scope="module")
def flow_direct(demo_server_port: int) -> dict[str, Answer]:
    return legacy_flow(direct_url(demo_server_port))


def test_raw_initialize_through_gateway_returns_a_session_id(flow_via_gateway: dict[str, Answer]) -> None:
    """POST initialize answers 200 with an Mcp-Session-Id header and the negotiated 2025-06-18 result."""
    answer = flow_via_gateway["initialize"]

    assert answer.status == 200
    assert answer.headers.get("mcp-session-id")
    [message] = answer.messages()
    assert message["id"] == 1
    assert message["result"]["protocolVersion"] == LEGACY_VERSION
    assert message["result"]["serverInfo"]["name"] == "gateway-demo"


def test_raw_initialized_notification_through_gateway_is_accepted_with_202(
    flow_via_gateway: dict[str, Answer],
) -> None:
    """POST notifications/initialized in the session answers 202 with no body."""
    answer = flow_via_gateway["initialized"]

    assert answer.status == 202
    assert answer.body == b""


def test_raw_tools_list_in_session_through_gateway_lists_demo_tools(flow_via_gateway: dict[str, Answer]) -> None:
    """POST tools/list with session id and MCP-Protocol-Version answers 200 with the demo tools."""
    answer = flow_via_gateway["tools/list"]

    assert answer.status == 200
    [message] = answer.messages()
    assert message["id"] == 2
    assert {"echo", "add", "countdown", "fail"} <= tool_names(message)


def test_raw_get_in_session_through_gateway_opens_an_event_stream(flow_via_gateway: dict[str, Answer]) -> None:
    """GET with the session id opens the server's text/event-stream for that session."""
    answer = flow_via_gateway["get"]

    assert answer.status == 200
    assert answer.content_type.startswith("text/event-stream")
    assert answer.headers["mcp-session-id"] == flow_via_gateway["initialize"].headers["mcp-session-id"]


def test_raw_delete_through_gateway_ends_the_session(flow_via_gateway: dict[str, Answer]) -> None:
    """DELETE with the session id succeeds, and the ended session then answers 404 Session not found."""
    assert 200 <= flow_via_gateway["delete"].status < 300

    after = flow_via_gateway["after delete"]
    assert after.status == 404
    assert after.json()["error"]["code"] == SESSION_NOT_FOUND


@pytest.mark.parametrize("step", ["after delete", "made-up session"])
def test_unknown_session_is_answered_by_the_gateway_like_the_sdk_server_does(
    flow_via_gateway: dict[str, Answer], flow_direct: dict[str, Answer], step: str
) -> None:
    """The gateway knows which sessions it bound; for any other it gives the SDK server's own 404 and code."""
    mine, theirs = flow_via_gateway[step], flow_direct[step]
    assert mine.status == theirs.status == 404
    assert mine.json()["error"]["code"] == theirs.json()["error"]["code"] == SESSION_NOT_FOUND
    assert mine.json()["error"]["message"] == theirs.json()["error"]["message"] == "Session not found"


def test_raw_made_up_session_through_gateway_gets_404_jsonrpc_error(flow_via_gateway: dict[str, Answer]) -> None:
    """A POST naming a session that never existed gets 404 with a JSON-RPC error body."""
    answer = flow_via_gateway["made-up session"]

    assert answer.status == 404
    assert answer.content_type.startswith("application/json")
    body = answer.json()
    assert body["jsonrpc"] == "2.0"
    assert body["error"]["code"] == SESSION_NOT_FOUND
    assert body["error"]["message"] == "Session not found"


@pytest.mark.parametrize("step", ["initialize", "initialized", "tools/list", "get", "delete"])
def test_raw_legacy_step_through_gateway_matches_upstream_answered_directly(
    flow_via_gateway: dict[str, Answer], flow_direct: dict[str, Answer], step: str
) -> None:
    """Every step of the flow gets the demo server's own status, body and headers, unchanged by the gateway."""
    assert_relayed_intact(flow_via_gateway[step], flow_direct[step])
