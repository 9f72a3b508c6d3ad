"""With the state store down, the gateway still routes (and says so in its log)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.upstream_server import UpstreamServer

CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize("policy", ["round_robin", "weighted_round_robin", "least_connections", "response_time", "health_based"])
def test_requests_still_flow_with_every_policy(
    client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None, policy: str, caplog: Any
) -> None:
    route = make_route("/api", upstream.url)
    route.service.lb_policy = policy
    route.service.save()
    assert [client.get("/api/echo").status_code for _ in range(3)] == [200, 200, 200]
    assert "state store unavailable" in caplog.text


def test_failures_while_down_are_answered_not_crashed(client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None) -> None:
    upstream.forced_status = 503
    make_route("/api", upstream.url)
    assert client.get("/api/echo").status_code == 503


def test_session_bound_request_gets_503_rather_than_a_wrong_target(
    client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None
) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    message = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
    response = client.post("/mcp", json.dumps(message), content_type="application/json", headers={"Mcp-Session-Id": "s-1"})
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = json.loads(response.content)
    assert body["id"] == 4 and body["error"]["data"]["type"] == "state_store_unavailable"
    assert upstream.requests == []
