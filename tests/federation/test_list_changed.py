"""A member's list_changed reaches the virtual server's clients: on the 2025 session's GET stream
and on a 2026-07-28 subscriptions/listen stream, and the lists they fetch then are the new ones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from federation.events import ListChangeStream
from federation.relay import sse_event
from routing.forwarding import KEEPALIVE_COMMENT
from tests.e2e.mcp_http import sse_data_messages
from tests.federation.conftest import McpCaller, connect, member

WAIT_SECONDS = 10.0


@pytest.fixture(autouse=True)
def quick_streams() -> Iterator[None]:
    with override_settings(GATEWAY_STREAM_KEEPALIVE_SECONDS=0.2, GATEWAY_FEDERATION_EVENT_POLL_SECONDS=0.05):
        yield


def next_messages(chunks: Iterator[bytes]) -> list[Any]:
    """Read the stream until something other than keep-alives arrives (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        chunk = next(chunks)
        if chunk and chunk != KEEPALIVE_COMMENT:
            return sse_data_messages(chunk.decode())
    raise AssertionError("no event arrived")


def test_legacy_session_stream_announces_a_members_new_tool(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    caller = connect(make_virtual_server(member(gamma)), "legacy")
    assert "gamma_extra" not in caller.tool_names()
    stream = caller.client.get(caller.path, headers={**caller.headers("GET"), "Accept": "text/event-stream"})
    chunks = iter(stream.streaming_content)

    assert stream["Content-Type"] == "text/event-stream"
    assert next(chunks) == KEEPALIVE_COMMENT
    gamma.control(add=["extra"])
    announced = next_messages(chunks)
    stream.close()

    assert announced == [{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}]
    assert caller.tool_names()[-1] == "gamma_extra"


def test_modern_listen_stream_acknowledges_then_announces_a_changed_description(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    caller = McpCaller(make_virtual_server(member(gamma)).path, modern=True)
    caller.tool_names()
    listen = caller.message("subscriptions/listen", {"notifications": {"toolsListChanged": True, "resourceSubscriptions": ["x://y"]}})
    stream = caller.client.post(caller.path, data=json.dumps(listen), content_type="application/json", headers=caller.headers("subscriptions/listen"))
    chunks = iter(stream.streaming_content)
    subscription = {"io.modelcontextprotocol/subscriptionId": listen["id"]}

    acknowledged = next_messages(chunks)
    gamma.control(describe={"echo": "Echo, described anew."})
    announced = next_messages(chunks)
    stream.close()

    assert acknowledged == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": {"toolsListChanged": True}, "_meta": subscription},
        }
    ]
    assert announced == [{"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": subscription}}]
    tools = {tool["name"]: tool for tool in caller.call("tools/list").result["tools"]}
    assert tools["gamma_echo"]["description"] == "Echo, described anew."


def test_a_stream_sends_only_the_lists_it_was_asked_for(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    server = make_virtual_server(member(gamma))
    connect(server, "modern").tool_names()
    assert server.service_id is not None
    tools_only = ListChangeStream(server.service_id, lists=("tools",))
    prompts_only = ListChangeStream(server.service_id, lists=("prompts",))

    gamma.control(add=["extra"])
    announced = next_messages(tools_only)
    after = [next(prompts_only) for _ in range(3)]

    assert announced == [{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}]
    assert set(after) == {KEEPALIVE_COMMENT}


def test_a_stream_ends_when_its_virtual_server_is_disabled(own_member: Any, make_virtual_server: Any) -> None:
    server = make_virtual_server(member(own_member("gamma")))
    assert server.service_id is not None
    stream = ListChangeStream(server.service_id, first_event=sse_event({"jsonrpc": "2.0", "method": "x"}))

    first = next(stream)
    server.enabled = False
    server.save()

    assert first.startswith(b"event: message")
    assert list(stream) == []
