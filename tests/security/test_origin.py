"""MCP routes refuse browser requests from origins they do not trust (DNS-rebinding protection)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from gateway_project import pipeline
from gateway_project.errors import (
    JSONRPC_CONTENT_TYPE,
    JSONRPC_SERVER_ERROR,
    PROBLEM_CONTENT_TYPE,
)
from routing import stages as routing_stages
from security.origin import ForbiddenOrigin, check_origin, normalize_origin
from security.ratelimit import enforce_rate_limits
from tests.upstream_server import UpstreamServer

ALLOWED = "https://app.example"
CALL = {"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "add", "arguments": {}}}


@pytest.fixture(autouse=True)
def origin_allowed_list() -> Iterator[None]:
    with override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED]):
        yield


@pytest.fixture
def mcp_route(make_route: Any, upstream: UpstreamServer) -> Any:
    return make_route("/mcp", upstream.url, kind="mcp")


def post_call(client: Any, message: Any = CALL, **headers: str) -> Any:
    return client.post("/mcp", json.dumps(message), content_type="application/json", headers=headers)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example",  # the allowed host, but another scheme
        "https://app.example:8443",  # the allowed host, but another port
        "https://app.example.evil.example",  # the allowed name as a prefix
        "http://testserver:8080",  # the gateway's host, but another port
        "http://localhost",
        "null",  # sandboxed iframes and file:// pages
        "not a url",
    ],
)
def test_foreign_origin_gets_403_jsonrpc_error_and_is_not_forwarded(client: Any, mcp_route: Any, upstream: UpstreamServer, origin: str) -> None:
    response = post_call(client, Origin=origin)
    assert response.status_code == 403
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    body = json.loads(response.content)
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == 77
    assert body["error"]["code"] == JSONRPC_SERVER_ERROR
    assert body["error"]["message"] == f"Origin {origin!r} is not allowed on this route"
    assert body["error"]["data"] == {"status": 403, "type": ForbiddenOrigin.code}
    assert upstream.requests == []


def test_forbidden_origin_on_event_stream_get_has_null_id(client: Any, mcp_route: Any, upstream: UpstreamServer) -> None:
    response = client.get("/mcp", headers={"Origin": "https://evil.example", "Accept": "text/event-stream"})
    assert response.status_code == 403
    body = json.loads(response.content)
    assert body["id"] is None
    assert body["error"]["data"]["type"] == "forbidden_origin"
    assert upstream.requests == []


@pytest.mark.parametrize(
    "origin",
    [
        ALLOWED,
        "https://APP.example",  # hosts are case-insensitive
        "https://app.example:443",  # the scheme's default port written out
        "http://testserver",  # same origin as the request's Host
        "https://testserver",  # same host behind a TLS-terminating load balancer
    ],
)
def test_allowed_or_same_origin_is_forwarded(client: Any, mcp_route: Any, upstream: UpstreamServer, origin: str) -> None:
    response = post_call(client, Origin=origin)
    assert response.status_code == 200
    assert len(upstream.requests) == 1


def test_request_without_origin_is_forwarded(client: Any, mcp_route: Any, upstream: UpstreamServer) -> None:
    """Non-browser clients (the MCP SDKs, curl) send no Origin."""
    assert post_call(client).status_code == 200
    assert len(upstream.requests) == 1


def test_same_origin_follows_the_requests_host(client: Any, mcp_route: Any, upstream: UpstreamServer) -> None:
    with override_settings(ALLOWED_HOSTS=["gateway.example"]):
        assert post_call(client, Origin="https://gateway.example", Host="gateway.example").status_code == 200
        assert post_call(client, Origin="https://gateway.example", Host="gateway.example:8443").status_code == 403
    assert len(upstream.requests) == 1


def test_rebound_dns_name_is_refused_by_the_host_check(client: Any, mcp_route: Any, upstream: UpstreamServer) -> None:
    """A page on a name rebound to the gateway is same-origin with its own Host: ALLOWED_HOSTS stops it."""
    response = post_call(client, Origin="http://rebound.example", Host="rebound.example")
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert upstream.requests == []


def test_plain_http_route_is_left_to_cors(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/echo", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert len(upstream.requests) == 1


def test_allowed_origins_are_read_per_request(client: Any, mcp_route: Any, upstream: UpstreamServer) -> None:
    assert post_call(client, Origin="https://new.example").status_code == 403
    with override_settings(CORS_ALLOWED_ORIGINS=["https://new.example"]):
        assert post_call(client, Origin="https://new.example").status_code == 200
    assert len(upstream.requests) == 1


def test_stage_runs_after_route_matching_and_before_any_quota_is_spent() -> None:
    """It needs the route; a refused browser request must not use up rate-limit quota."""
    stages = list(pipeline.REQUEST_STAGES)
    assert stages.index(routing_stages.find_route) < stages.index(check_origin) < stages.index(enforce_rate_limits)


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://A.example", "https://a.example:443"),
        ("http://a.example:80", "http://a.example:80"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("http://localhost:5173/", "http://localhost:5173"),
        ("null", ""),
        ("ftp://a.example", ""),
        ("http://a.example:99999", ""),
    ],
)
def test_origins_compare_in_normal_form(origin: str, normalized: str) -> None:
    assert normalize_origin(origin) == normalized
