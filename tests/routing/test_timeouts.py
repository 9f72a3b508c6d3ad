"""Each timeout fires at its limit and answers 504 in the caller's shape."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from routing.models import DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, Route, Service
from tests.upstream_server import UpstreamServer

RPC = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full: connections neither succeed nor fail, they hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.settimeout(0.2)
        try:
            filler.connect(("127.0.0.1", port))
        except OSError:
            pass
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_defaults_are_5s_connect_30s_request_60s_response() -> None:
    service = Service(name="defaults")
    assert (service.connect_timeout, service.request_timeout, service.response_timeout) == (5.0, 30.0, 60.0)
    assert (DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT) == (5.0, 30.0, 60.0)


def test_connect_timeout_fires_and_answers_504(client: Any, make_route: Any, unaccepting_port: int) -> None:
    route = make_route("/mcp", f"http://127.0.0.1:{unaccepting_port}", kind="mcp")
    route.service.connect_timeout = 0.3
    route.service.max_retries = 0
    route.service.save()
    response, took = timed(lambda: client.post("/mcp", json.dumps(RPC), content_type="application/json"))
    assert response.status_code == 504
    body = json.loads(response.content)
    assert body["id"] == 9 and body["error"]["data"]["type"] == "upstream_timeout"
    assert 0.3 <= took < 3.0


def test_connect_timeout_fails_over_to_another_target(client: Any, make_route: Any, unaccepting_port: int, upstream: UpstreamServer) -> None:
    route = make_route("/api", [f"http://127.0.0.1:{unaccepting_port}", upstream.url])
    route.service.connect_timeout = 0.2
    route.service.save()
    assert [client.post("/api/echo", "{}", content_type="application/json").status_code for _ in range(4)] == [200] * 4


def test_route_request_timeout_overrides_the_service(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route: Route = make_route("/api", upstream.url)
    route.service.request_timeout = 10
    route.service.max_retries = 0
    route.service.save()
    route.request_timeout = 0.3
    route.save()
    response, took = timed(lambda: client.get("/api/slow-headers?seconds=2"))
    assert response.status_code == 504
    assert 0.3 <= took < 1.5


def test_response_timeout_bounds_the_whole_body(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route: Route = make_route("/api", upstream.url)
    route.response_timeout = 0.3
    route.save()
    response, took = timed(lambda: client.get("/api/slow-body?seconds=2"))
    assert response.status_code == 504
    assert 0.3 <= took < 1.5


def test_stream_may_outlive_the_response_timeout_while_events_keep_coming(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    """For an event stream the limit is the silence between events, not the stream's length."""
    route: Route = make_route("/mcp", upstream.url, kind="mcp")
    route.response_timeout = 0.5
    route.save()
    response = client.get("/mcp/sse?events=5&delay=0.2")
    body = b"".join(response.streaming_content)
    assert body.count(b"data: ") == 5  # a whole second of stream, no gap above 0.5 s


def test_stream_silent_longer_than_the_response_timeout_is_cut(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route: Route = make_route("/mcp", upstream.url, kind="mcp")
    route.response_timeout = 0.3
    route.save()
    response = client.get("/mcp/sse?events=3&delay=1.0")
    body, took = timed(lambda: b"".join(response.streaming_content))
    assert body.count(b"data: ") == 1
    assert took < 1.0
