"""Failover, retries and their safety rules, against real failing upstreams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_project.state import get_state_store
from routing.models import Route
from routing.target_status import ejected_key
from tests.live_servers import free_port
from tests.upstream_server import UpstreamServer

TOOLS_CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "transfer_money", "arguments": {}}}


@pytest.fixture
def pair() -> Iterator[tuple[UpstreamServer, UpstreamServer]]:
    first, second = UpstreamServer().start(), UpstreamServer().start()
    yield first, second
    first.stop()
    second.stop()


def configure(route: Route, **service_fields: Any) -> Route:
    for name, value in {"retry_backoff_ms": 1, "retry_backoff_max_ms": 5, **service_fields}.items():
        setattr(route.service, name, value)
    route.service.save()
    return route


def call_tool(client: Any, path: str, message: dict[str, Any] = TOOLS_CALL) -> Any:
    return client.post(path, json.dumps(message), content_type="application/json")


def test_connect_failure_fails_over_so_no_client_sees_it(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    configure(make_route("/api", [f"http://127.0.0.1:{free_port()}", upstream.url]))
    statuses = [client.get("/api/echo").status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert len(upstream.requests) == 20


def test_connect_failure_is_retried_even_for_tools_call(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    """Nothing reached the dead target, so trying the call elsewhere cannot run it twice."""
    configure(make_route("/mcp", [f"http://127.0.0.1:{free_port()}", upstream.url], kind="mcp"))
    for _ in range(4):
        assert call_tool(client, "/mcp/echo").status_code == 200
    assert len(upstream.requests) == 4


def test_tools_call_that_reached_a_failing_upstream_is_not_repeated(client: Any, make_route: Any, pair: Any) -> None:
    failing, healthy = pair
    failing.forced_status = 503
    configure(make_route("/mcp", [failing.url, healthy.url], kind="mcp"))
    answers = [call_tool(client, "/mcp/echo") for _ in range(2)]
    executed = len(failing.requests) + len(healthy.requests)
    assert executed == 2  # each call ran exactly once, wherever it landed
    failed = [a for a in answers if a.status_code == 503]
    assert len(failed) == len(failing.requests) == 1
    assert json.loads(failed[0].content)["error"]["message"] == "upstream said 503"  # the upstream's own answer


def test_idempotent_tool_is_retried_on_another_target(client: Any, make_route: Any, pair: Any) -> None:
    failing, healthy = pair
    failing.forced_status = 503
    configure(make_route("/mcp", [failing.url, healthy.url], kind="mcp", idempotent_tools=["transfer_money"]))
    assert [call_tool(client, "/mcp/echo").status_code for _ in range(4)] == [200] * 4
    assert len(healthy.requests) == 4


@pytest.mark.parametrize("method", ["tools/list", "resources/read", "initialize"])
def test_side_effect_free_mcp_requests_are_retried(client: Any, make_route: Any, pair: Any, method: str) -> None:
    failing, healthy = pair
    failing.forced_status = 502
    configure(make_route("/mcp", [failing.url, healthy.url], kind="mcp"))
    message = {"jsonrpc": "2.0", "id": 3, "method": method, "params": {"uri": "file:///x"}}
    assert [call_tool(client, "/mcp/echo", message).status_code for _ in range(4)] == [200] * 4


def test_post_on_http_route_is_not_retried_after_it_was_sent(client: Any, make_route: Any, pair: Any) -> None:
    failing, healthy = pair
    failing.forced_status = 504
    configure(make_route("/api", [failing.url, healthy.url]))
    statuses = sorted(client.post("/api/echo", "{}", content_type="application/json").status_code for _ in range(2))
    assert statuses == [200, 504]
    assert len(failing.requests) == 1 and len(healthy.requests) == 1


def test_timed_out_tools_call_is_not_repeated(client: Any, make_route: Any, pair: Any) -> None:
    slow, other = pair
    slow.delay_seconds = 1.0
    route = configure(make_route("/mcp", [slow.url], kind="mcp"))
    route.request_timeout = 0.2
    route.save()
    route.service.targets.create(url=other.url)
    answers = [call_tool(client, "/mcp/echo") for _ in range(2)]
    assert sorted(a.status_code for a in answers) == [200, 504]
    assert len(slow.requests) == 1 and len(other.requests) == 1


def test_retries_stop_at_max_retries_and_relay_the_last_answer(client: Any, make_route: Any, pair: Any) -> None:
    first, second = pair
    first.forced_status = second.forced_status = 503
    configure(make_route("/api", [first.url, second.url]), max_retries=2)
    response = client.get("/api/echo")
    assert response.status_code == 503
    assert json.loads(response.content)["error"]["message"] == "upstream said 503"
    assert len(first.requests) + len(second.requests) == 3  # one try and two retries


def test_retry_budget_caps_extra_load_during_an_outage(client: Any, make_route: Any, pair: Any) -> None:
    first, second = pair
    first.forced_status = second.forced_status = 503
    configure(
        make_route("/api", [first.url, second.url]),
        max_retries=3,
        retry_budget_percent=20,
        circuit_failure_threshold=1000,
        passive_failure_threshold=1000,
    )
    requests = 40
    for _ in range(requests):
        client.get("/api/echo")
    sent = len(first.requests) + len(second.requests)
    assert requests < sent <= requests + int(requests * 0.2) + 3


def test_dead_target_is_ejected_and_returns_after_recovery(client: Any, make_route: Any, pair: Any) -> None:
    flapping, steady = pair
    flapping.forced_status = 503
    route = configure(make_route("/api", [flapping.url, steady.url]), passive_failure_threshold=3, passive_ejection_seconds=0.5, circuit_failure_threshold=1000, retry_budget_percent=100)
    statuses = [client.get("/api/echo").status_code for _ in range(12)]
    assert statuses == [200] * 12  # GET is retried on the steady target
    assert len(flapping.requests) == 3  # ejected after three failures, never tried again
    flapping_target = route.service.targets.get(url=flapping.url)
    assert get_state_store().get(ejected_key(flapping_target.id)) is not None
    flapping.forced_status = None
    deadline = time.monotonic() + 5
    while get_state_store().get(ejected_key(flapping_target.id)) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(6):
        assert client.get("/api/echo").status_code == 200
    assert len(flapping.requests) > 3  # back in rotation


def test_open_circuit_answers_fast_without_touching_the_network(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    upstream.forced_status = 500
    configure(make_route("/mcp", [upstream.url], kind="mcp"), circuit_failure_threshold=2, circuit_recovery_seconds=30, passive_failure_threshold=1000)
    assert [call_tool(client, "/mcp/echo").status_code for _ in range(2)] == [500, 500]
    refused = call_tool(client, "/mcp/echo", {**TOOLS_CALL, "id": 77})
    assert refused.status_code == 503
    assert int(refused["Retry-After"]) >= 1
    body = json.loads(refused.content)
    assert body["id"] == 77 and body["error"]["data"]["type"] == "circuit_open"
    assert len(upstream.requests) == 2


def test_open_circuit_on_one_target_sends_traffic_to_the_other(client: Any, make_route: Any, pair: Any) -> None:
    broken, healthy = pair
    broken.forced_status = 500
    configure(make_route("/api", [broken.url, healthy.url]), circuit_failure_threshold=2, passive_failure_threshold=1000)
    for _ in range(10):
        client.get("/api/echo")
    assert len(broken.requests) == 2
    assert len(healthy.requests) == 8


def test_answer_breaking_off_mid_body_is_retried_when_safe(client: Any, make_route: Any, pair: Any) -> None:
    """Headers arrived, then the body stalled: nothing reached the client, so a GET goes elsewhere."""
    stalling, healthy = pair
    stalling.stall_body_seconds = 1.0
    route = configure(make_route("/api", [stalling.url, healthy.url]))
    route.response_timeout = 0.2
    route.save()
    assert [client.get("/api/echo").status_code for _ in range(2)] == [200, 200]
    assert len(stalling.requests) == 2 and len(healthy.requests) == 2  # each GET: stalled, then retried


def test_post_breaking_off_mid_body_is_not_repeated(client: Any, make_route: Any, pair: Any) -> None:
    stalling, healthy = pair
    stalling.stall_body_seconds = 1.0
    route = configure(make_route("/api", [stalling.url, healthy.url]))
    route.response_timeout = 0.2
    route.save()
    statuses = sorted(client.post("/api/echo", "{}", content_type="application/json").status_code for _ in range(2))
    assert statuses == [200, 504]
    assert len(stalling.requests) == 1 and len(healthy.requests) == 1
