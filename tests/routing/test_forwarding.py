"""Forwarding through the pipeline to a real upstream: headers, bodies, statuses, pooling."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3

from security.api_keys import issue_api_key
from tests.upstream_server import UpstreamServer


def echoed(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_request_reaches_upstream_with_path_remainder_and_query(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url + "/base")
    seen = echoed(client.get("/api/users/7/echo?page=2&sort=name"))
    assert seen["path"] == "/base/users/7/echo"
    assert seen["query"] == "page=2&sort=name"


def test_path_rewrite_replaces_the_matched_path(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/public/v1", upstream.url, path_rewrite="/internal")
    assert echoed(client.get("/public/v1/echo"))["path"] == "/internal/echo"


def test_host_is_rewritten_and_forwarded_headers_are_set(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    headers = echoed(
        client.get("/api/echo", headers={"Host": "localhost", "X-Forwarded-For": "203.0.113.9"}, REMOTE_ADDR="10.1.2.3")
    )["headers"]
    assert headers["Host"] == f"127.0.0.1:{upstream.server_address[1]}"
    assert headers["X-Forwarded-For"] == "203.0.113.9, 10.1.2.3"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == "localhost"


def test_hop_by_hop_headers_are_not_forwarded(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    headers = echoed(
        client.get(
            "/api/echo",
            headers={"Connection": "keep-alive, X-Private-Hop", "X-Private-Hop": "secret", "Keep-Alive": "timeout=5", "TE": "trailers", "X-Kept": "yes"},
        )
    )["headers"]
    lowered = {name.lower() for name in headers}
    assert {"x-private-hop", "keep-alive", "te"}.isdisjoint(lowered)
    assert headers["X-Kept"] == "yes"


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_client_credentials_never_reach_the_upstream(client: Any, make_route: Any, upstream: UpstreamServer, header: str) -> None:
    make_route("/api", upstream.url)
    _key, secret = issue_api_key(name="forwarding-test")
    value = f"Bearer {secret}" if header == "Authorization" else secret
    headers = echoed(client.get("/api/echo", headers={header: value}))["headers"]
    assert secret not in json.dumps(headers)
    assert header not in headers


def test_target_credential_is_added_upstream(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/api", upstream.url)
    route.service.targets.update(upstream_auth_header="X-Upstream-Token", upstream_auth_value="upstream-secret")
    route.service.save()  # bumps the config version so the snapshot sees the new credential
    _key, secret = issue_api_key(name="upstream-credential-test")
    headers = echoed(client.get("/api/echo", headers={"Authorization": f"Bearer {secret}"}))["headers"]
    assert headers["X-Upstream-Token"] == "upstream-secret"
    assert "Authorization" not in headers


def test_mcp_headers_are_forwarded(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    initialize = b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}'
    session_id = client.post("/mcp", initialize, content_type="application/json")["Mcp-Session-Id"]
    mcp_headers = {
        "Accept": "application/json, text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": "2025-06-18",
        "Last-Event-ID": "41",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "add",
        "Mcp-Param-Region": "eu",
    }
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}'
    seen = echoed(client.post("/mcp/echo", body, content_type="application/json", headers=mcp_headers))
    received = {name.lower(): value for name, value in seen["headers"].items()}
    for name, value in mcp_headers.items():
        assert received[name.lower()] == value
    assert seen["body"] == body.decode()


def test_response_headers_pass_through_without_hop_by_hop(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/echo")
    assert response["X-Upstream"] == "test"
    assert not response.has_header("Connection")
    assert not response.has_header("Keep-Alive")


@pytest.mark.parametrize("status", [200, 202, 400, 404, 405, 500, 503])
def test_upstream_status_and_body_return_unchanged(client: Any, make_route: Any, upstream: UpstreamServer, status: int) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    ping = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
    direct = urllib3.request("POST", f"{upstream.url}/status/{status}", body=ping, headers={"Content-Type": "application/json"})
    through = client.post(f"/mcp/status/{status}", ping, content_type="application/json")
    assert through.status_code == direct.status == status
    assert through.content == direct.data


def test_json_answer_is_byte_exact(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    direct = urllib3.request("GET", f"{upstream.url}/status/400").data
    assert client.get("/api/status/400").content == direct


def test_large_answer_is_streamed_intact(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/big?bytes=3000000")
    assert response.streaming
    body = b"".join(response.streaming_content)
    assert body == b"x" * 3_000_000


def test_request_body_is_forwarded_byte_exact(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    payload = '{"keep":  "spacing",\n "unicode": "h\\u00e9llo", "html": "<b>bold</b>"}'
    client.put("/api/echo", payload, content_type="application/json")
    assert upstream.requests[-1]["body"] == payload.encode()


def test_upstream_connections_are_pooled_and_reused(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    for _ in range(10):
        assert client.get("/api/echo").status_code == 200
    assert len(upstream.connection_ports) == 1
    assert len(upstream.requests) == 10


def test_round_robin_spreads_requests_over_targets(client: Any, make_route: Any) -> None:
    servers = [UpstreamServer().start() for _ in range(3)]
    try:
        make_route("/api", [server.url for server in servers])
        for _ in range(9):
            assert client.get("/api/echo").status_code == 200
        assert [len(server.requests) for server in servers] == [3, 3, 3]
    finally:
        for server in servers:
            server.stop()


def test_answer_without_content_type_gets_none_added(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/status/202")
    assert response.status_code == 202
    assert not response.has_header("Content-Type")
