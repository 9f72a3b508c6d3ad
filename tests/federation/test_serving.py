"""A virtual server answering MCP clients through the whole pipeline, in both eras, over two real
member servers: its own handshake, the merged lists, calls reaching the member that owns them."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.test import override_settings

from federation.errors import BAD_CURSOR, MISSING_SESSION, UNKNOWN_TOOL
from federation.eras import UNSUPPORTED_VERSION, VERSION_HEADER_MISMATCH
from federation.models import ExposureRule, ItemKind, Member
from gateway_project.errors import MethodNotAllowed
from tests.e2e.mcp_http import MODERN_VERSION
from tests.federation.conftest import McpCaller, connect, member, text_of

ALPHA_TOOLS = ["alpha_echo", "alpha_search", "alpha_bump", "alpha_countdown"]
BETA_TOOLS = ["beta_echo", "beta_search", "beta_bump", "beta_countdown"]


@pytest.fixture
def server(members: Any, make_virtual_server: Any) -> Any:
    alpha, beta = members
    return make_virtual_server(member(alpha), member(beta))


def test_merged_tool_list_prefixes_each_members_tools_in_member_order(server: Any, era: str) -> None:
    assert connect(server, era).tool_names() == ALPHA_TOOLS + BETA_TOOLS


def test_each_call_reaches_the_member_that_owns_the_tool(server: Any, era: str) -> None:
    caller = connect(server, era)

    assert text_of(caller.call_tool("alpha_echo", {"text": "hi"})) == "alpha:hi"
    assert text_of(caller.call_tool("beta_echo", {"text": "hi"})) == "beta:hi"


def test_prompts_and_resources_are_merged_and_reach_their_member(server: Any, era: str) -> None:
    caller = connect(server, era)

    prompts = caller.call("prompts/list").result["prompts"]
    resources = caller.call("resources/list").result["resources"]
    prompt = caller.call("prompts/get", {"name": "beta_greet", "arguments": {"who": "Ada"}}).result
    read = caller.call("resources/read", {"uri": "beta://readme"}).result

    assert [p["name"] for p in prompts] == ["alpha_greet", "beta_greet"]
    assert [r["uri"] for r in resources] == ["alpha://readme", "beta://readme"]
    assert prompt["messages"][0]["content"]["text"] == "beta greets Ada"
    assert read["contents"][0]["text"] == "readme of beta"


def test_renamed_and_redescribed_tool_is_listed_and_called_under_its_new_name(server: Any, era: str) -> None:
    alpha = Member.objects.get(virtual_server=server, prefix="alpha")
    ExposureRule.objects.create(member=alpha, kind=ItemKind.TOOL, name="echo", exposed_name="say", description="Say it.")
    caller = connect(server, era)

    tools = {tool["name"]: tool for tool in caller.call("tools/list").result["tools"]}

    assert "alpha_echo" not in tools
    assert tools["say"]["description"] == "Say it."
    assert text_of(caller.call_tool("say", {"text": "renamed"})) == "alpha:renamed"


def test_excluded_tool_is_neither_listed_nor_callable(server: Any, era: str) -> None:
    beta = Member.objects.get(virtual_server=server, prefix="beta")
    ExposureRule.objects.create(member=beta, kind=ItemKind.TOOL, name="bump", action="exclude")
    caller = connect(server, era)

    refused = caller.call_tool("beta_bump", {"call_id": "x"})

    assert "beta_bump" not in caller.tool_names()
    assert refused.status == 400
    assert refused.error["code"] == -32602
    assert refused.error["message"] == UNKNOWN_TOOL.format(name="beta_bump")


def test_an_allow_list_member_exposes_only_included_tools(server: Any, era: str) -> None:
    beta = Member.objects.get(virtual_server=server, prefix="beta")
    beta.unlisted_items = "hide"
    beta.save()
    ExposureRule.objects.create(member=beta, kind=ItemKind.TOOL, name="search")

    assert connect(server, era).tool_names() == ALPHA_TOOLS + ["beta_search"]


def test_legacy_initialize_is_answered_by_the_gateway_with_its_own_session(server: Any) -> None:
    caller = McpCaller(server.path, modern=False)

    answer = caller.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})

    assert answer.status == 200
    assert answer.result["protocolVersion"] == "2025-06-18"
    assert answer.result["serverInfo"]["name"] == server.name
    assert answer.result["capabilities"] == {
        "tools": {"listChanged": True},
        "prompts": {"listChanged": True},
        "resources": {"listChanged": True},
    }
    assert len(answer.headers["mcp-session-id"]) >= 32


def test_modern_discover_names_the_2026_version_and_the_union_of_capabilities(server: Any) -> None:
    answer = McpCaller(server.path, modern=True).call("server/discover")

    assert answer.status == 200
    assert answer.result["supportedVersions"] == [MODERN_VERSION]
    assert set(answer.result["capabilities"]) == {"tools", "prompts", "resources"}
    assert answer.result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == server.name
    assert "mcp-session-id" not in answer.headers


def test_legacy_request_without_a_session_is_refused_with_400(server: Any) -> None:
    answer = McpCaller(server.path, modern=False).call("tools/list")

    assert answer.status == 400
    assert answer.error["code"] == -32600
    assert answer.error["message"] == MISSING_SESSION


def test_unknown_session_gets_404_so_the_client_initializes_again(server: Any) -> None:
    caller = McpCaller(server.path, modern=False)
    caller.session_id = "not-a-session"

    answer = caller.call("tools/list")

    assert answer.status == 404
    assert answer.error["code"] == -32600
    assert answer.message["id"] == 1


def test_delete_ends_the_session(server: Any) -> None:
    caller = connect(server, "legacy")
    ended = caller.client.delete(server.path, headers=caller.headers("DELETE"))

    after = caller.call("tools/list")

    assert ended.status_code == 204
    assert after.status == 404


def test_modern_get_and_delete_answer_405(server: Any) -> None:
    caller = McpCaller(server.path, modern=True)

    for response in (caller.client.get(server.path), caller.client.delete(server.path)):
        assert response.status_code == 405
        assert response["Allow"] == "POST"
        assert response.json()["error"]["code"] == MethodNotAllowed.jsonrpc_code


def test_modern_request_whose_version_header_disagrees_gets_32020(server: Any) -> None:
    caller = McpCaller(server.path, modern=True)
    headers = {**caller.headers("tools/list"), "MCP-Protocol-Version": "2025-11-25"}

    answer = caller.send(caller.message("tools/list"), headers)

    assert answer.status == 400
    assert answer.error["code"] == -32020
    assert answer.error["message"] == VERSION_HEADER_MISMATCH


def test_modern_request_at_an_unknown_version_is_told_the_supported_ones(server: Any) -> None:
    caller = McpCaller(server.path, modern=True)
    message = caller.message("tools/list")
    message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers = {**caller.headers("tools/list"), "MCP-Protocol-Version": "2099-01-01"}

    answer = caller.send(message, headers)

    assert answer.status == 400
    assert answer.error["code"] == -32022
    assert answer.error["message"] == UNSUPPORTED_VERSION
    assert answer.error["data"] == {"supported": [MODERN_VERSION], "requested": "2099-01-01"}


def test_unknown_method_gets_32601_with_the_requests_id(server: Any, era: str) -> None:
    answer = connect(server, era).call("completion/complete", {})

    assert answer.status == 404
    assert answer.error["code"] == -32601
    assert answer.message["id"] == 1 if era == "modern" else 2


def test_notifications_are_acknowledged_with_202(server: Any, era: str) -> None:
    caller = connect(server, era)
    message = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}

    response = caller.client.post(server.path, data=message, content_type="application/json", headers=caller.headers("notifications/cancelled"))

    assert response.status_code == 202


@override_settings(GATEWAY_FEDERATION_PAGE_SIZE=3)
def test_lists_are_paginated_with_opaque_cursors_that_walk_the_whole_list(server: Any, era: str) -> None:
    caller = connect(server, era)
    names: list[str] = []
    cursors: list[str] = []
    params: dict[str, Any] = {}
    while True:
        page = caller.call("tools/list", params).result
        names += [tool["name"] for tool in page["tools"]]
        if "nextCursor" not in page:
            break
        cursors.append(page["nextCursor"])
        params = {"cursor": page["nextCursor"]}

    assert names == ALPHA_TOOLS + BETA_TOOLS
    assert len(cursors) == 2
    assert not any(cursor.isdigit() for cursor in cursors)


def test_a_cursor_the_gateway_did_not_hand_out_is_refused(server: Any, era: str) -> None:
    answer = connect(server, era).call("tools/list", {"cursor": "bm90LWEtY3Vyc29y"})

    assert answer.status == 400
    assert answer.error["code"] == -32602
    assert answer.error["message"] == BAD_CURSOR


def test_progress_and_log_notifications_stream_through_before_the_result(server: Any) -> None:
    caller = connect(server, "legacy")

    answer = caller.call("tools/call", {"name": "beta_countdown", "arguments": {"steps": 3}, "_meta": {"progressToken": "p7"}})

    methods = [message.get("method") for message in answer.messages]
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert methods == ["notifications/progress", "notifications/message"] * 3 + [None]
    assert [m["params"]["progress"] for m in answer.messages if m.get("method") == "notifications/progress"] == [1, 2, 3]
    assert all(m["params"]["progressToken"] == "p7" for m in answer.messages if m.get("method") == "notifications/progress")
    assert text_of(answer) == "beta:done"


def test_a_call_without_notifications_is_answered_with_plain_json(server: Any, era: str) -> None:
    answer = connect(server, era).call_tool("alpha_echo", {"text": "plain"})

    assert answer.headers["content-type"] == "application/json"
    assert text_of(answer) == "alpha:plain"


def test_a_client_leaving_mid_call_cancels_the_members_work(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    caller = connect(make_virtual_server(member(gamma)), "legacy")
    message = caller.message("tools/call", {"name": "gamma_countdown", "arguments": {"steps": 200}, "_meta": {"progressToken": 1}})
    response = caller.client.post(caller.path, data=json.dumps(message), content_type="application/json", headers=caller.headers("tools/call"))

    first = next(iter(response.streaming_content))
    response.close()
    deadline = time.monotonic() + 5
    while gamma.calls()["cancelled"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert b"notifications/progress" in first
    assert gamma.calls()["cancelled"] == 1


def test_two_clients_using_the_same_request_id_at_once_each_get_their_own_answer(server: Any, era: str) -> None:
    """Clients pick their JSON-RPC ids freely and share the gateway's member session: the member
    must see distinct ids, or one answer (or cancellation) would be taken for the other's."""
    first, second = connect(server, era), connect(server, era)
    assert text_of(first.call_tool("alpha_echo", {"text": "warm"})) == "alpha:warm"  # caches built here
    second.call_tool("alpha_echo", {"text": "warm"})
    same_id_messages = []
    for caller, word in ((first, "one"), (second, "two")):
        # bump sleeps in the member, so the two calls are in the member session at the same time
        message = caller.message("tools/call", {"name": "alpha_bump", "arguments": {"call_id": word, "sleep_seconds": 0.5}})
        message["id"] = 77
        same_id_messages.append((caller, message))
    answers: dict[str, Any] = {}

    def send(caller: Any, message: dict[str, Any], word: str) -> None:
        answers[word] = caller.send(message, caller.headers("tools/call", "alpha_bump"))

    threads = [
        threading.Thread(target=send, args=(caller, message, message["params"]["arguments"]["call_id"]))
        for caller, message in same_id_messages
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted((answer.status, answer.message["id"]) for answer in answers.values()) == [(200, 77), (200, 77)]
    assert all(text_of(answer).startswith("alpha:") for answer in answers.values())
