"""Fan-out routes: several services asked at once, answered first, last or merged."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from authn.errors import JSONRPC_FORBIDDEN
from gateway_project.errors import JSONRPC_CONTENT_TYPE, JSONRPC_INVALID_PARAMS
from routing.models import Route, Service, Target
from routing.snapshot import get_snapshot
from security.api_keys import issue_api_key
from tests.error_assertions import assert_jsonrpc_error
from tests.live_servers import free_port
from tests.performance.jsonrpc_upstream import JsonRpcUpstream, running_upstreams

Start = Callable[..., JsonRpcUpstream]


@pytest.fixture(autouse=True)
def no_default_ip_limit() -> Iterator[None]:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


@pytest.fixture
def start_upstream() -> Iterator[Start]:
    with running_upstreams() as start:
        yield start


def add_service(name: str, url: str, kind: str = "mcp") -> Service:
    service = Service.objects.create(name=name, kind=kind)
    Target.objects.create(service=service, url=url)
    return service


def fan_out(make_route: Any, strategy: str, own: JsonRpcUpstream, *others: JsonRpcUpstream, **route_fields: Any) -> Route:
    """A route at /mcp whose own service is ``own``'s, fanning out to ``others``' services
    (each service is named after its upstream)."""
    for upstream in others:
        add_service(upstream.name, upstream.url)
    names = [upstream.name for upstream in others]
    return make_route("/mcp", own.url, name=own.name, kind="mcp", fanout=strategy, fanout_services=names, **route_fields)


def rpc(client: Any, method: str, request_id: Any = 1, headers: dict[str, str] | None = None, **params: Any) -> Any:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return client.post("/mcp", json.dumps(message), content_type="application/json", headers=headers or {})


def result_of(response: Any) -> Any:
    assert response.status_code == 200
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    return json.loads(response.content)["result"]


# --- first and last ------------------------------------------------------------------------------


def test_first_answers_with_the_quickest_successful_service(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    slow, failing, quick = start_upstream("slow", delay_seconds=3.0), start_upstream("failing", failing=True), start_upstream("quick", delay_seconds=0.1)
    fan_out(make_route, "first", slow, failing, quick)
    started = time.monotonic()
    response = rpc(client, "echo", text="hi")
    assert time.monotonic() - started < 2.0  # the slow service (3 s) was not waited for
    assert result_of(response) == {"server": "quick", "params": {"text": "hi"}}
    deadline = time.monotonic() + 2.0  # on a busy machine the slow one may still be reading it
    while not slow.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [len(upstream.requests) for upstream in (slow, failing, quick)] == [1, 1, 1]


def test_first_without_a_success_answers_with_the_route_own_service(
    client: Any, db: Any, make_route: Any, start_upstream: Start
) -> None:
    own, other = start_upstream("own", failing=True), start_upstream("other", failing=True, delay_seconds=0.1)
    fan_out(make_route, "first", own, other)
    response = rpc(client, "echo", request_id=5)
    assert response.status_code == 200
    assert json.loads(response.content) == {"jsonrpc": "2.0", "id": 5, "error": {"code": -32001, "message": "own said -32001"}}
    assert len(other.requests) == 1


def test_last_answers_with_the_last_successful_service(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    early, late, failing_last = (
        start_upstream("early"),
        start_upstream("late", delay_seconds=0.3),
        start_upstream("failing-last", failing=True, delay_seconds=0.5),
    )
    fan_out(make_route, "last", early, late, failing_last)
    started = time.monotonic()
    response = rpc(client, "echo")
    assert time.monotonic() - started >= 0.5  # every service was waited for
    assert result_of(response)["server"] == "late"


# --- merge ---------------------------------------------------------------------------------------


def test_merge_unites_tool_lists_with_service_prefixes(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    alpha, beta = start_upstream("alpha", tools=("add", "echo")), start_upstream("beta", tools=("add", "search"))
    fan_out(make_route, "merge", alpha, beta)
    response = rpc(client, "tools/list", request_id="list-1")
    assert json.loads(response.content)["id"] == "list-1"
    assert result_of(response) == {
        "tools": [
            {"name": "alpha__add", "inputSchema": {"type": "object"}},
            {"name": "alpha__echo", "inputSchema": {"type": "object"}},
            {"name": "beta__add", "inputSchema": {"type": "object"}},
            {"name": "beta__search", "inputSchema": {"type": "object"}},
        ]
    }


def test_merge_keeps_a_resource_listed_twice_once(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    alpha = start_upstream("alpha", resources=("file:///shared", "file:///a"))
    beta = start_upstream("beta", resources=("file:///b", "file:///shared"))
    fan_out(make_route, "merge", alpha, beta)
    uris = [resource["uri"] for resource in result_of(rpc(client, "resources/list"))["resources"]]
    assert uris == ["file:///shared", "file:///a", "file:///b"]


def test_merge_leaves_out_failing_and_unreachable_services(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    alpha, broken = start_upstream("alpha", prompts=("greet",)), start_upstream("broken", failing=True)
    gamma = start_upstream("gamma", prompts=("summarize",))
    for upstream in (broken, gamma):
        add_service(upstream.name, upstream.url)
    add_service("down", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    make_route("/mcp", alpha.url, name="alpha", kind="mcp", fanout="merge", fanout_services=["broken", "down", "gamma"])
    names = [prompt["name"] for prompt in result_of(rpc(client, "prompts/list"))["prompts"]]
    assert names == ["alpha__greet", "gamma__summarize"]


def test_merge_reads_lists_answered_as_event_streams(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    alpha, beta = start_upstream("alpha", tools=("add",)), start_upstream("beta", tools=("search",), answer_with_events=True)
    fan_out(make_route, "merge", alpha, beta)
    assert [tool["name"] for tool in result_of(rpc(client, "tools/list"))["tools"]] == ["alpha__add", "beta__search"]


def test_a_merged_tool_call_reaches_its_service_under_its_own_name(
    client: Any, db: Any, make_route: Any, start_upstream: Start
) -> None:
    alpha, beta = start_upstream("alpha", tools=("search",)), start_upstream("beta", tools=("search",))
    fan_out(make_route, "merge", alpha, beta)
    assert result_of(rpc(client, "tools/call", name="beta__search", arguments={"q": "x"})) == {
        "content": [{"type": "text", "text": "beta:search"}]
    }
    assert alpha.requests == []
    assert beta.calls()[0]["params"] == {"name": "search", "arguments": {"q": "x"}}


def test_a_call_without_a_service_prefix_is_refused_on_a_merge_route(
    client: Any, db: Any, make_route: Any, start_upstream: Start
) -> None:
    alpha, beta = start_upstream("alpha"), start_upstream("beta")
    fan_out(make_route, "merge", alpha, beta)
    response = rpc(client, "tools/call", request_id=4, name="search", arguments={})
    body = assert_jsonrpc_error(response, 400, "unknown_merged_name", 4, JSONRPC_INVALID_PARAMS)
    assert "<service>__<name>" in body["error"]["message"]
    assert alpha.requests == beta.requests == []


def test_other_requests_on_a_merge_route_go_to_its_own_service(
    client: Any, db: Any, make_route: Any, start_upstream: Start
) -> None:
    alpha, beta = start_upstream("alpha"), start_upstream("beta")
    fan_out(make_route, "merge", alpha, beta)
    assert result_of(rpc(client, "echo"))["server"] == "alpha"
    assert beta.requests == []


def test_a_merged_list_shows_only_the_granted_tools(client: Any, db: Any, make_route: Any, start_upstream: Start) -> None:
    alpha, beta = start_upstream("alpha", tools=("add",)), start_upstream("beta", tools=("add", "search"))
    fan_out(make_route, "merge", alpha, beta, allow_anonymous=False, tool_permissions=True)
    _, key = issue_api_key(name="searcher", permissions=["tool:alpha:beta__search"])
    headers = {"Authorization": f"Bearer {key}"}
    assert [tool["name"] for tool in result_of(rpc(client, "tools/list", headers=headers))["tools"]] == ["beta__search"]
    assert rpc(client, "tools/call", headers=headers, name="beta__search", arguments={}).status_code == 200
    refused = rpc(client, "tools/call", request_id=9, headers=headers, name="beta__add", arguments={})
    assert_jsonrpc_error(refused, 403, "forbidden", 9, JSONRPC_FORBIDDEN)


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fanout", "services", "field", "message"),
    [
        ("first", [], "fanout_services", "Name at least one service to ask together with the route's own."),
        ("", ["beta"], "fanout_services", "Choose a fan-out strategy, or leave this list empty."),
        ("last", ["nope"], "fanout_services", "No service is named nope."),
        ("first", ["alpha"], "fanout_services", "alpha is the route's own service; it is always asked."),
        ("first", ["beta", "beta"], "fanout_services", "Name each service once."),
        ("first", ["api"], "fanout_services", "The route's service and its fan-out services must all be of one kind."),
        ("merge", "beta", "fanout_services", 'Give a list of service names, e.g. ["search-eu", "search-us"].'),
    ],
)
def test_bad_fanout_settings_are_refused_with_a_clear_message(
    db: Any, fanout: str, services: Any, field: str, message: str
) -> None:
    alpha = Service.objects.create(name="alpha", kind="mcp")
    Service.objects.create(name="beta", kind="mcp")
    Service.objects.create(name="api", kind="http")
    route = Route(name="r", path="/mcp", service=alpha, fanout=fanout, fanout_services=services)
    with pytest.raises(ValidationError) as refused:
        route.clean()
    assert refused.value.message_dict == {field: [message]}


def test_merge_is_refused_for_plain_http_services(db: Any) -> None:
    api = Service.objects.create(name="api", kind="http")
    Service.objects.create(name="api2", kind="http")
    route = Route(name="r", path="/api", service=api, fanout="merge", fanout_services=["api2"])
    with pytest.raises(ValidationError) as refused:
        route.clean()
    assert refused.value.message_dict == {"fanout": ["Merging lists is for MCP services (tools/list, prompts/list, resources/list)."]}
    route.fanout = "first"
    route.clean()


def test_a_deleted_fanout_service_is_skipped_by_the_snapshot(db: Any, make_route: Any) -> None:
    for name in ("beta", "gamma"):
        add_service(name, "http://127.0.0.1:9")
    make_route("/mcp", "http://127.0.0.1:9", name="alpha", kind="mcp", fanout="first", fanout_services=["gamma", "beta"])
    [route] = get_snapshot().routes
    assert [service.name for service in route.fanout_services] == ["gamma", "beta"]
    Service.objects.filter(name="gamma").delete()
    [route] = get_snapshot().routes
    assert [service.name for service in route.fanout_services] == ["beta"]


def test_the_route_admin_shows_batching_and_fanout(admin_client: Any, make_route: Any) -> None:
    route = make_route("/mcp", "http://127.0.0.1:9", kind="mcp")
    page = admin_client.get(f"/admin/routing/route/{route.pk}/change/")
    assert page.status_code == 200
    for text in (b"Batching and fan-out", b'name="upstream_batching"', b'name="fanout"', b'name="fanout_services"'):
        assert text in page.content
