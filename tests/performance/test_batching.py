"""Client JSON-RPC batches: each item through the whole pipeline on its own, one array back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from authn.errors import JSONRPC_FORBIDDEN
from gateway_project.errors import JSONRPC_CONTENT_TYPE, JSONRPC_INVALID_REQUEST, JSONRPC_SERVER_ERROR
from performance.batching import INITIALIZE_IN_BATCH, TOO_MANY_ITEMS, VERSION_FORBIDS_BATCHES
from performance.capacity import in_flight
from security.api_keys import issue_api_key
from security.models import RateLimitPolicy
from security.ratelimit import JSONRPC_RATE_LIMITED
from tests.error_assertions import assert_jsonrpc_error
from tests.performance.jsonrpc_upstream import JsonRpcUpstream, running_upstreams
from tests.upstream_server import UpstreamServer

# Items run on worker threads with database connections of their own: they must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_default_ip_limit() -> Iterator[None]:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


@pytest.fixture
def start_upstream() -> Iterator[Callable[..., JsonRpcUpstream]]:
    with running_upstreams() as start:
        yield start


@pytest.fixture
def mcp(make_route: Any, start_upstream: Callable[..., JsonRpcUpstream]) -> JsonRpcUpstream:
    upstream = start_upstream("calc")
    make_route("/mcp", upstream.url, name="calc", kind="mcp")
    return upstream


def call(method: str, request_id: Any = None, **params: Any) -> dict[str, Any]:
    """A JSON-RPC request, or a notification when ``request_id`` is None."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


def tool_call(tool: str, request_id: int) -> dict[str, Any]:
    return call("tools/call", request_id, name=tool, arguments={})


def post(client: Any, path: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data, content_type="application/json", headers=headers)


def warm_caches(client: Any, path: str, **headers: str) -> None:
    """One single call first, so this thread builds the caches of the configuration the test
    just wrote (routes, keys, policies, limiter) before items race to use them: while one thread
    rebuilds a ConfigCache, the others are still served the previous value, the last test's."""
    response = post(client, path, call("echo", "warm-up"), **headers)
    assert response.status_code == 200


def answers(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    body = json.loads(response.content)
    assert isinstance(body, list)
    return body


# --- answers ---------------------------------------------------------------------------------------


def test_items_are_answered_in_one_array_in_their_order(client: Any, mcp: JsonRpcUpstream) -> None:
    batch = [call("echo", 1, text="a"), call("echo", "two", text="b"), call("echo", 3, text="c")]
    assert answers(post(client, "/mcp", batch)) == [
        {"jsonrpc": "2.0", "id": 1, "result": {"server": "calc", "params": {"text": "a"}}},
        {"jsonrpc": "2.0", "id": "two", "result": {"server": "calc", "params": {"text": "b"}}},
        {"jsonrpc": "2.0", "id": 3, "result": {"server": "calc", "params": {"text": "c"}}},
    ]
    # Three calls of their own, never an array.
    assert sorted(json.dumps(request["message"]) for request in mcp.requests) == sorted(json.dumps(item) for item in batch)


def test_each_item_reaches_the_upstream_byte_exact(client: Any, mcp: JsonRpcUpstream) -> None:
    first = b'{"jsonrpc": "2.0",  "id": 1, "method": "echo", "params": {"n": 1.50, "t": "\\u00e9"}}'
    second = b'{"id":2,"method":"echo","jsonrpc":"2.0"}'
    answers(post(client, "/mcp", b"[ " + first + b" ,\n" + second + b"]"))
    assert sorted(request["body"] for request in mcp.requests) == sorted([first, second])


def test_errors_are_per_item_and_notifications_get_no_entry(client: Any, mcp: JsonRpcUpstream) -> None:
    batch = [call("echo", 1), call("fail", 2), call("notifications/progress"), call("no/such/method", 3)]
    entries = answers(post(client, "/mcp", batch))
    assert [entry["id"] for entry in entries] == [1, 2, 3]
    assert entries[0]["result"]["server"] == "calc"
    assert entries[1]["error"]["code"] == -32001
    assert entries[2]["error"]["code"] == -32601
    assert len(mcp.requests) == 4  # the notification ran too


def test_a_batch_of_notifications_and_responses_gets_202_without_a_body(client: Any, mcp: JsonRpcUpstream) -> None:
    reply = {"jsonrpc": "2.0", "id": "server-asked-1", "result": {}}
    response = post(client, "/mcp", [call("notifications/initialized"), reply])
    assert response.status_code == 202
    assert response.content == b""
    assert "Content-Type" not in response
    assert len(mcp.requests) == 2


def test_an_item_answered_with_an_event_stream_is_read_from_its_event(
    client: Any, make_route: Any, start_upstream: Callable[..., JsonRpcUpstream]
) -> None:
    upstream = start_upstream("streams", answer_with_events=True)
    make_route("/mcp", upstream.url, kind="mcp")
    entries = answers(post(client, "/mcp", [call("echo", 1, text="a"), call("fail", 2)]))
    assert entries == [
        {"jsonrpc": "2.0", "id": 1, "result": {"server": "streams", "params": {"text": "a"}}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32001, "message": "streams said -32001"}},
    ]


def test_an_item_past_the_batch_timeout_gets_its_own_error(
    client: Any, mcp: JsonRpcUpstream, settings: Any
) -> None:
    settings.GATEWAY_BATCH_TIMEOUT_SECONDS = 0.2
    started = time.monotonic()
    entries = answers(post(client, "/mcp", [call("echo", 1), call("slow", 2, seconds=0.9), call("echo", 3)]))
    assert time.monotonic() - started < 0.8  # answered at the timeout, not when the slow item ended
    assert [entry["id"] for entry in entries] == [1, 2, 3]
    assert "result" in entries[0] and "result" in entries[2]
    assert entries[1]["error"]["code"] == JSONRPC_SERVER_ERROR
    assert entries[1]["error"]["message"] == "The batch item did not finish within the batch timeout of 0.2 s"
    assert entries[1]["error"]["data"] == {"status": 504, "type": "batch_item_timeout"}
    # The late item finishes unobserved and gives its in-flight place back.
    deadline = time.monotonic() + 3
    while in_flight.current and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight.current == 0


# --- refusals of the whole batch -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mcp", "http"])
def test_more_than_ten_items_get_one_invalid_request_error(
    client: Any, make_route: Any, start_upstream: Callable[..., JsonRpcUpstream], kind: str
) -> None:
    upstream = start_upstream("calc")
    make_route("/rpc", upstream.url, kind=kind)
    response = post(client, "/rpc", [call("echo", n) for n in range(11)])
    body = assert_jsonrpc_error(response, 400, "batch_too_large", None, JSONRPC_INVALID_REQUEST)
    assert body["error"]["message"] == TOO_MANY_ITEMS.format(limit=10, count=11)
    assert upstream.requests == []
    assert len(answers(post(client, "/rpc", [call("echo", n) for n in range(10)]))) == 10


def test_an_empty_batch_gets_one_invalid_request_error(client: Any, mcp: JsonRpcUpstream) -> None:
    assert_jsonrpc_error(post(client, "/mcp", b"[]"), 400, "invalid_request", None, JSONRPC_INVALID_REQUEST)
    assert mcp.requests == []


@pytest.mark.parametrize("version", ["2025-06-18", "2026-07-28"])
def test_mcp_versions_after_2025_03_26_get_a_clear_refusal(client: Any, mcp: JsonRpcUpstream, version: str) -> None:
    response = post(client, "/mcp", [call("echo", 1), call("echo", 2)], **{"MCP-Protocol-Version": version})
    body = assert_jsonrpc_error(response, 400, "batch_not_supported", None, JSONRPC_INVALID_REQUEST)
    assert body["error"]["message"] == VERSION_FORBIDS_BATCHES.format(version=version)
    assert mcp.requests == []


def test_mcp_2025_03_26_clients_may_send_batches(client: Any, mcp: JsonRpcUpstream) -> None:
    response = post(client, "/mcp", [call("echo", 1), call("echo", 2)], **{"MCP-Protocol-Version": "2025-03-26"})
    assert [entry["id"] for entry in answers(response)] == [1, 2]
    versions = [{name.lower(): value for name, value in request["headers"].items()}["mcp-protocol-version"] for request in mcp.requests]
    assert versions == ["2025-03-26"] * 2


def test_initialize_in_a_batch_is_refused_as_that_item(client: Any, mcp: JsonRpcUpstream) -> None:
    entries = answers(post(client, "/mcp", [call("initialize", 1, protocolVersion="2025-03-26"), call("echo", 2)]))
    assert entries[0]["id"] == 1
    assert entries[0]["error"]["code"] == JSONRPC_INVALID_REQUEST
    assert entries[0]["error"]["message"] == INITIALIZE_IN_BATCH
    assert entries[1]["result"]["server"] == "calc"
    assert [request["message"]["method"] for request in mcp.requests] == ["echo"]


# --- each item on its own --------------------------------------------------------------------------


def test_each_item_is_authorized_on_its_own(
    client: Any, make_route: Any, start_upstream: Callable[..., JsonRpcUpstream]
) -> None:
    upstream = start_upstream("calc")
    make_route("/mcp", upstream.url, name="calc", kind="mcp", allow_anonymous=False, tool_permissions=True)
    _, key = issue_api_key(name="only-a", permissions=["tool:calc:A"])
    warm_caches(client, "/mcp", Authorization=f"Bearer {key}")
    response = post(client, "/mcp", [tool_call("A", 1), tool_call("B", 2), tool_call("A", 3)], Authorization=f"Bearer {key}")
    entries = answers(response)
    assert [entry["id"] for entry in entries] == [1, 2, 3]
    assert entries[0]["result"]["content"][0]["text"] == "calc:A"
    assert entries[2]["result"]["content"][0]["text"] == "calc:A"
    assert entries[1]["error"]["code"] == JSONRPC_FORBIDDEN
    assert entries[1]["error"]["data"] == {"status": 403, "type": "forbidden"}
    assert [call["params"]["name"] for call in upstream.calls() if call["method"] == "tools/call"] == ["A", "A"]


def test_each_item_needs_the_credential_its_route_asks_for(
    client: Any, make_route: Any, start_upstream: Callable[..., JsonRpcUpstream]
) -> None:
    upstream = start_upstream("calc")
    make_route("/mcp", upstream.url, name="calc", kind="mcp", allow_anonymous=False, tool_permissions=True)
    entries = answers(post(client, "/mcp", [tool_call("A", 1), tool_call("B", 2)]))
    assert [(entry["id"], entry["error"]["data"]["status"]) for entry in entries] == [(1, 401), (2, 401)]
    assert upstream.requests == []


def test_each_item_is_rate_limited_on_its_own(client: Any, mcp: JsonRpcUpstream) -> None:
    RateLimitPolicy.objects.create(name="three calls", algorithm="sliding_window", scope="route", limit=3, window_seconds=60)
    warm_caches(client, "/mcp")  # spends one of the three
    entries = answers(post(client, "/mcp", [call("echo", n) for n in range(1, 5)]))
    assert sorted(entry["id"] for entry in entries) == [1, 2, 3, 4]
    refused = [entry for entry in entries if "error" in entry]
    assert len(refused) == 2  # which two depends on which items ran first
    assert {entry["error"]["code"] for entry in refused} == {JSONRPC_RATE_LIMITED}
    assert {entry["error"]["data"]["status"] for entry in refused} == {429}
    assert len(mcp.requests) == 3


def test_each_item_is_routed_on_its_own(client: Any, make_route: Any, start_upstream: Callable[..., JsonRpcUpstream]) -> None:
    general, special = start_upstream("general"), start_upstream("special")
    make_route("/mcp", general.url, kind="mcp")
    make_route("/mcp", special.url, kind="mcp", priority=10, content_matchers={"name": "B"})
    entries = answers(post(client, "/mcp", [tool_call("A", 1), tool_call("B", 2)]))
    assert [entry["result"]["content"][0]["text"] for entry in entries] == ["general:A", "special:B"]


# --- plain JSON-RPC over HTTP ----------------------------------------------------------------------


def test_a_jsonrpc_batch_on_an_http_route_answers_jsonrpc_errors(
    client: Any, make_route: Any, start_upstream: Callable[..., JsonRpcUpstream]
) -> None:
    upstream = start_upstream("api")
    make_route("/rpc", upstream.url, kind="http", allow_anonymous=False)
    _, key = issue_api_key(name="k", permissions=[])
    warm_caches(client, "/rpc", **{"X-API-Key": key})
    entries = answers(post(client, "/rpc", [call("echo", 1)], **{"X-API-Key": key}))
    assert entries == [{"jsonrpc": "2.0", "id": 1, "result": {"server": "api", "params": {}}}]
    refused = answers(post(client, "/rpc", [call("echo", 2)]))  # no credential: a JSON-RPC 401 entry
    assert refused[0]["id"] == 2 and refused[0]["error"]["data"] == {"status": 401, "type": "credential_required"}


def test_other_json_arrays_on_an_http_route_are_forwarded_untouched(
    client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/api", upstream.url)
    for body in (b"[1, 2, 3]", b"[]", b'[{"id": 1, "method": "not-jsonrpc"}]'):
        response = post(client, "/api/echo", body)
        assert response.status_code == 200
        assert json.loads(response.content)["body"] == body.decode()
    assert len(upstream.requests) == 3
