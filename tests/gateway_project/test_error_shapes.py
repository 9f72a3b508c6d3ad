"""The gateway's own errors: JSON-RPC with the request id on MCP routes, problem+json elsewhere."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from gateway_project.errors import (
    JSONRPC_INVALID_REQUEST,
    JSONRPC_PARSE_ERROR,
    JSONRPC_SERVER_ERROR,
)
from tests.error_assertions import assert_jsonrpc_error, assert_problem
from tests.live_servers import free_port
from tests.upstream_server import UpstreamServer

RPC_CALL = {"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "add", "arguments": {}}}


def post_rpc(client: Any, path: str, message: dict[str, Any] = RPC_CALL) -> Any:
    return client.post(path, json.dumps(message), content_type="application/json", headers={"Accept": "application/json, text/event-stream"})


@pytest.mark.django_db
def test_no_route_gets_404_problem_json(client: Any) -> None:
    body = assert_problem(client.get("/nowhere"), 404, "route_not_found")
    assert body["instance"] == "/nowhere"


def test_wrong_method_gets_405_with_allow_header(client: Any, make_route: Any) -> None:
    make_route("/api", "http://127.0.0.1:9", methods=["GET"])
    response = client.delete("/api")
    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_unreachable_upstream_gets_502_problem_json(client: Any, make_route: Any) -> None:
    make_route("/api", f"http://127.0.0.1:{free_port()}")
    assert_problem(client.get("/api"), 502, "upstream_unavailable")


def test_unreachable_upstream_on_mcp_route_gets_jsonrpc_error_with_request_id(client: Any, make_route: Any) -> None:
    make_route("/mcp/down", f"http://127.0.0.1:{free_port()}", kind="mcp")
    assert_jsonrpc_error(post_rpc(client, "/mcp/down"), 502, "upstream_unavailable", 42, JSONRPC_SERVER_ERROR)


def test_string_request_id_is_echoed_in_jsonrpc_error(client: Any, make_route: Any) -> None:
    make_route("/mcp/down", f"http://127.0.0.1:{free_port()}", kind="mcp")
    response = post_rpc(client, "/mcp/down", {**RPC_CALL, "id": "req-7"})
    assert json.loads(response.content)["id"] == "req-7"


def test_slow_upstream_headers_get_504(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/api", upstream.url)
    route.service.request_timeout = 0.2
    route.service.save()
    assert_problem(client.get("/api/slow-headers?seconds=2"), 504, "upstream_timeout")


def test_slow_upstream_on_mcp_route_gets_jsonrpc_504(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/mcp/slow", upstream.url, kind="mcp")
    route.service.request_timeout = 0.2
    route.service.save()
    assert_jsonrpc_error(post_rpc(client, "/mcp/slow/slow-headers?seconds=2"), 504, "upstream_timeout", 42, JSONRPC_SERVER_ERROR)


def test_upstream_silent_mid_body_gets_504(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/api", upstream.url)
    route.service.response_timeout = 0.2
    route.service.save()
    assert_problem(client.get("/api/slow-body?seconds=2"), 504, "upstream_timeout")


def test_upstream_answering_within_timeouts_is_not_cut(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/api", upstream.url)
    route.service.request_timeout = 1.0
    route.service.response_timeout = 1.0
    route.service.save()
    assert client.get("/api/slow-body?seconds=0.3").status_code == 200
    assert client.get("/api/slow-headers?seconds=0.3").status_code == 200


@override_settings(GATEWAY_MAX_BODY_BYTES=64)
def test_oversized_body_gets_413_and_never_reaches_upstream(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    assert_problem(client.post("/api/echo", "x" * 65, content_type="text/plain"), 413, "payload_too_large")
    assert upstream.requests == []


@override_settings(GATEWAY_MAX_BODY_BYTES=64)
def test_oversized_body_on_mcp_route_gets_jsonrpc_413(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp/demo", upstream.url, kind="mcp")
    # The body is refused unread (its declared length is enough), so the id cannot be known.
    assert_jsonrpc_error(post_rpc(client, "/mcp/demo"), 413, "payload_too_large", None, JSONRPC_INVALID_REQUEST)
    assert upstream.requests == []


@override_settings(GATEWAY_MAX_HEADER_COUNT=5)
def test_too_many_headers_get_431(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    headers = {f"X-Extra-{n}": "v" for n in range(10)}
    assert_problem(client.get("/api/echo", headers=headers), 431, "headers_too_large")


@override_settings(GATEWAY_MAX_URL_BYTES=100)
def test_overlong_url_gets_414(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    assert_problem(client.get("/api/echo?q=" + "a" * 200), 414, "uri_too_long")


def test_service_without_targets_gets_503(client: Any, make_route: Any) -> None:
    route = make_route("/api", [])
    assert route.service.targets.count() == 0
    assert_problem(client.get("/api"), 503, "no_target_available")


@pytest.mark.django_db
def test_disallowed_host_gets_problem_json_not_html(client: Any) -> None:
    response = client.get("/anything", headers={"Host": "evil.example"})
    assert_problem(response, 400, "bad_request")


def test_malformed_json_on_mcp_route_gets_parse_error_and_is_not_forwarded(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp/x", upstream.url, kind="mcp")
    response = client.post("/mcp/x", "{not json", content_type="application/json")
    assert_jsonrpc_error(response, 400, "parse_error", None, JSONRPC_PARSE_ERROR)
    assert upstream.requests == []


@pytest.mark.parametrize("body", ['"just a string"', "42", "null"])
def test_json_that_is_not_jsonrpc_on_mcp_route_gets_invalid_request(client: Any, make_route: Any, upstream: UpstreamServer, body: str) -> None:
    make_route("/mcp/x", upstream.url, kind="mcp")
    response = client.post("/mcp/x", body, content_type="application/json")
    assert_jsonrpc_error(response, 400, "invalid_request", None, JSONRPC_INVALID_REQUEST)
    assert upstream.requests == []


def test_malformed_json_on_plain_http_route_is_the_upstreams_to_judge(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.post("/api/echo", "{not json", content_type="application/json")
    assert response.status_code == 200
    assert json.loads(response.content)["body"] == "{not json"
