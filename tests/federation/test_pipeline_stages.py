"""Every stage of the request path applies to a virtual server as to any route: credentials,
per-principal tool permissions (on the names clients see), per-tool rate limits, argument
validation against the exposed schema, the response cache, the access log; and pinned
arguments, which the gateway sets and clients may not."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from authn.errors import JSONRPC_FORBIDDEN
from federation.errors import PINNED_ARGUMENT
from federation.models import ExposureRule, ItemKind, Member
from performance.models import ResponseCachePolicy
from security.api_keys import issue_api_key
from security.models import RateLimitPolicy
from security.ratelimit import JSONRPC_RATE_LIMITED
from tests.federation.conftest import McpCaller, connect, member, text_of


@pytest.fixture
def server(members: Any, make_virtual_server: Any) -> Any:
    alpha, beta = members
    return make_virtual_server(member(alpha), member(beta))


@pytest.fixture
def guarded(members: Any, make_virtual_server: Any) -> Any:
    """A virtual server that needs a credential and checks tool permissions."""
    alpha, beta = members
    return make_virtual_server(member(alpha), member(beta), route={"allow_anonymous": False, "tool_permissions": True})


def test_a_guarded_virtual_server_asks_for_a_credential(guarded: Any, era: str) -> None:
    caller = McpCaller(guarded.path, modern=era == "modern")

    answer = caller.call("tools/list") if era == "modern" else caller.call("initialize", {"protocolVersion": "2025-06-18"})

    assert answer.status == 401
    assert "www-authenticate" in answer.headers
    assert answer.message["id"] == 1


def test_each_principal_sees_and_calls_only_the_tools_it_is_granted(guarded: Any, era: str) -> None:
    _, narrow = issue_api_key(name="narrow", permissions=[f"tool:{guarded.name}:alpha_*"])
    _, wide = issue_api_key(name="wide", permissions=[f"tool:{guarded.name}:*"])
    narrow_caller, wide_caller = connect(guarded, era, narrow), connect(guarded, era, wide)

    refused = narrow_caller.call_tool("beta_echo", {"text": "x"})

    assert narrow_caller.tool_names() == ["alpha_echo", "alpha_search", "alpha_bump", "alpha_countdown"]
    assert len(wide_caller.tool_names()) == 8
    assert refused.status == 403
    assert refused.error["code"] == JSONRPC_FORBIDDEN
    assert text_of(narrow_caller.call_tool("alpha_echo", {"text": "ok"})) == "alpha:ok"


def test_a_per_tool_rate_limit_counts_each_exposed_tool_apart(server: Any, era: str) -> None:
    policy = RateLimitPolicy.objects.create(name="two per tool", algorithm="sliding_window", scope="tool", limit=2, window_seconds=60)
    assert server.route is not None
    policy.routes.add(server.route)
    caller = connect(server, era)

    allowed = [caller.call_tool("alpha_echo", {"text": str(n)}).status for n in range(2)]
    limited = caller.call_tool("alpha_echo", {"text": "3"})
    other_tool = caller.call_tool("beta_echo", {"text": "x"})

    assert allowed == [200, 200]
    assert limited.status == 429
    assert limited.error["code"] == JSONRPC_RATE_LIMITED
    assert other_tool.status == 200


def test_arguments_are_validated_against_the_exposed_schema_before_any_member_is_asked(server: Any, members: Any, era: str) -> None:
    alpha, _ = members
    caller = connect(server, era)
    caller.tool_names()  # the gateway learns the schemas from its own list answer
    executed_before = alpha.calls()["executions"].get("echo", 0)

    refused = caller.call_tool("alpha_echo", {"text": 42})

    assert refused.status == 400
    assert refused.error["code"] == -32602
    assert "text" in refused.error["message"]
    assert alpha.calls()["executions"].get("echo", 0) == executed_before


def test_legacy_list_answers_are_served_from_the_response_cache(server: Any) -> None:
    assert server.route is not None
    ResponseCachePolicy.objects.create(route=server.route)
    caller = connect(server, "legacy")

    first, second = caller.call("tools/list"), caller.call("tools/list")

    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.result == first.result


def test_modern_list_answers_say_they_are_stale_at_once_so_no_cache_keeps_them(server: Any) -> None:
    assert server.route is not None
    ResponseCachePolicy.objects.create(route=server.route)
    caller = connect(server, "modern")

    first, second = caller.call("tools/list"), caller.call("tools/list")

    assert (first.result["ttlMs"], first.result["cacheScope"]) == (0, "private")
    assert second.headers["x-cache"] == "MISS"


def test_every_exchange_is_recorded_under_the_virtual_servers_route(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        connect(server, "modern").call_tool("beta_echo", {"text": "x"})

    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert any(f"route={server.name} " in line and "rpc=tools/call" in line and "status=200" in line for line in lines)


@pytest.fixture
def pinned_region(server: Any) -> Any:
    alpha = Member.objects.get(virtual_server=server, prefix="alpha")
    ExposureRule.objects.create(member=alpha, kind=ItemKind.TOOL, name="search", pinned_arguments={"region": "eu"})
    return server


def test_a_pinned_argument_is_hidden_from_the_schema_and_set_on_every_call(pinned_region: Any, era: str) -> None:
    caller = connect(pinned_region, era)

    tools = {tool["name"]: tool for tool in caller.call("tools/list").result["tools"]}
    answer = caller.call_tool("alpha_search", {"query": "maps"})

    assert tools["alpha_search"]["inputSchema"]["properties"] == {"query": {"type": "string"}}
    assert tools["alpha_search"]["inputSchema"]["required"] == ["query"]
    assert text_of(answer) == "alpha:maps@eu"


def test_a_client_cannot_override_a_pinned_argument(pinned_region: Any, members: Any, era: str) -> None:
    alpha, _ = members
    caller = connect(pinned_region, era)
    executed_before = alpha.calls()["executions"].get("search", 0)

    refused = caller.call_tool("alpha_search", {"query": "maps", "region": "us"})

    assert refused.status == 400
    assert refused.error["code"] == -32602
    assert refused.error["message"] == PINNED_ARGUMENT.format(argument="region", name="alpha_search")
    assert alpha.calls()["executions"].get("search", 0) == executed_before


def test_a_warm_call_through_a_virtual_server_makes_no_database_query(server: Any, era: str, django_assert_num_queries: Any) -> None:
    caller = connect(server, era)
    caller.call_tool("alpha_echo", {"text": "warm"})

    with django_assert_num_queries(0):
        listed = caller.call("tools/list")
        called = caller.call_tool("beta_echo", {"text": "cold?"})

    assert listed.status == 200
    assert text_of(called) == "beta:cold?"
