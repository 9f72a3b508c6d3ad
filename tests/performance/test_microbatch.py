"""Micro-batching toward upstreams that accept JSON-RPC batches: many callers, one request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from gateway_project.errors import JSONRPC_SERVER_ERROR
from tests.error_assertions import assert_jsonrpc_error
from tests.performance.jsonrpc_upstream import JsonRpcUpstream, running_upstreams

# Callers run on threads with database connections of their own: they must see the rows.
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
def batching(make_route: Any, start_upstream: Callable[..., JsonRpcUpstream], client: Any) -> JsonRpcUpstream:
    """A plain JSON-RPC route whose upstream takes batches, opted in; its caches warm."""
    upstream = start_upstream("api")
    make_route("/rpc", upstream.url, upstream_batching=True)
    warm_caches(client, "/rpc")
    return upstream


def warm_caches(client: Any, path: str) -> None:
    """A notification (never batched) builds the caches of the test's configuration on this
    thread, before callers race to: while one thread rebuilds, the others get the old value."""
    response = post(client, path, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert response.status_code == 202


def echo(request_id: Any, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "echo", "params": params}


def post(client: Any, path: str, message: Any, **headers: str) -> Any:
    return client.post(path, json.dumps(message), content_type="application/json", headers=headers)


def call_together(path: str, messages: list[Any], headers: list[dict[str, str]] | None = None) -> list[Any]:
    """Each message from a caller of its own, all released at once; the responses in order."""
    barrier = threading.Barrier(len(messages))
    responses: list[Any] = [None] * len(messages)

    def caller(number: int) -> None:
        own_client = Client()
        barrier.wait(timeout=10)
        responses[number] = post(own_client, path, messages[number], **(headers[number] if headers else {}))

    threads = [threading.Thread(target=caller, args=(number,)) for number in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


def batches_sent(upstream: JsonRpcUpstream) -> list[list[dict[str, Any]]]:
    return [request["message"] for request in upstream.requests if isinstance(request["message"], list)]


def test_ten_concurrent_callers_share_one_upstream_request(batching: JsonRpcUpstream, settings: Any) -> None:
    settings.GATEWAY_MICROBATCH_WINDOW_SECONDS = 5.0  # only a full batch is sent early
    started = time.monotonic()
    # Every caller says id 1: ids are the callers' own business.
    responses = call_together("/rpc", [echo(1, caller=number) for number in range(10)])
    assert time.monotonic() - started < 4.0  # sent when the tenth call came, not after the window
    for number, response in enumerate(responses):
        assert response.status_code == 200
        assert json.loads(response.content) == {"jsonrpc": "2.0", "id": 1, "result": {"server": "api", "params": {"caller": number}}}
    [sent] = batches_sent(batching)
    assert sorted(call["params"]["caller"] for call in sent) == list(range(10))
    assert len({call["id"] for call in sent}) == 10  # unique within the upstream batch
    # The warm-up notification went alone (it gets no answer to share out), then the batch.
    assert [type(request["message"]) for request in batching.requests] == [dict, list]


def test_calls_in_one_window_are_sent_together_when_it_ends(batching: JsonRpcUpstream, settings: Any) -> None:
    settings.GATEWAY_MICROBATCH_WINDOW_SECONDS = 0.3
    started = time.monotonic()
    responses = call_together("/rpc", [echo("a"), echo("b"), echo("c")])
    assert time.monotonic() - started >= 0.3
    assert [json.loads(response.content)["id"] for response in responses] == ["a", "b", "c"]
    assert [len(batch) for batch in batches_sent(batching)] == [3]


def test_more_calls_than_a_batch_holds_make_another_batch(batching: JsonRpcUpstream, settings: Any) -> None:
    settings.GATEWAY_MICROBATCH_WINDOW_SECONDS = 0.5
    settings.GATEWAY_MICROBATCH_MAX_ITEMS = 4
    responses = call_together("/rpc", [echo(number) for number in range(6)])
    assert [json.loads(response.content)["id"] for response in responses] == list(range(6))
    assert sorted(len(batch) for batch in batches_sent(batching)) == [2, 4]


def test_calls_with_different_headers_are_never_batched_together(batching: JsonRpcUpstream, settings: Any) -> None:
    settings.GATEWAY_MICROBATCH_WINDOW_SECONDS = 0.3
    tenants = ["red", "blue", "red", "blue"]
    responses = call_together("/rpc", [echo(n, tenant=tenant) for n, tenant in enumerate(tenants)], [{"X-Tenant": t} for t in tenants])
    assert all(response.status_code == 200 for response in responses)
    sent = [request for request in batching.requests if isinstance(request["message"], list)]
    assert len(sent) == 2
    for request in sent:
        assert {call["params"]["tenant"] for call in request["message"]} == {request["headers"]["X-Tenant"]}


def test_a_client_batch_reaches_a_batching_upstream_as_one_request(
    client: Any, batching: JsonRpcUpstream, settings: Any
) -> None:
    settings.GATEWAY_MICROBATCH_WINDOW_SECONDS = 0.2
    response = post(client, "/rpc", [echo(n) for n in range(5)])
    assert [answer["id"] for answer in json.loads(response.content)] == list(range(5))
    assert [len(batch) for batch in batches_sent(batching)] == [5]


def test_an_upstream_refusing_batches_fails_each_call_clearly(
    make_route: Any, start_upstream: Callable[..., JsonRpcUpstream], client: Any, settings: Any
) -> None:
    upstream = start_upstream("old", accepts_batches=False)
    make_route("/mcp", upstream.url, kind="mcp", upstream_batching=True)
    warm_caches(client, "/mcp")
    settings.GATEWAY_MICROBATCH_WINDOW_SECONDS = 0.3
    responses = call_together("/mcp", [echo(7), echo(8)])
    for request_id, response in zip((7, 8), responses):
        body = assert_jsonrpc_error(response, 502, "unusable_batch_answer", request_id, JSONRPC_SERVER_ERROR)
        assert body["error"]["message"] == "The upstream answered the batch with a single JSON object (HTTP 200) instead of a JSON array"
    assert [len(batch) for batch in batches_sent(upstream)] == [2]


def test_routes_that_did_not_opt_in_send_each_call_alone(
    make_route: Any, start_upstream: Callable[..., JsonRpcUpstream], client: Any
) -> None:
    upstream = start_upstream("plain")
    make_route("/rpc", upstream.url)  # upstream_batching is off by default
    warm_caches(client, "/rpc")
    responses = call_together("/rpc", [echo(n) for n in range(3)])
    assert [json.loads(response.content)["id"] for response in responses] == [0, 1, 2]
    assert batches_sent(upstream) == []
    assert len(upstream.requests) == 4
