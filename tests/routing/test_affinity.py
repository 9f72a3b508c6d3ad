"""Legacy MCP sessions stay on the target that opened them; lost sessions get 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_project.errors import JSONRPC_INVALID_REQUEST
from gateway_project.state import get_state_store
from routing.models import Route
from routing.target_status import down_key
from tests.upstream_server import UpstreamServer

INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest.fixture
def two_servers() -> Iterator[list[UpstreamServer]]:
    servers = [UpstreamServer().start(), UpstreamServer().start()]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def mcp_route(make_route: Any, two_servers: list[UpstreamServer]) -> Route:
    return make_route("/mcp", [server.url for server in two_servers], kind="mcp")


def post(client: Any, message: dict[str, Any], session_id: str | None = None) -> Any:
    headers = {"Mcp-Session-Id": session_id} if session_id else {}
    return client.post("/mcp/echo", json.dumps(message), content_type="application/json", headers=headers)


def owner_of(session_id: str, servers: list[UpstreamServer]) -> UpstreamServer:
    return next(server for server in servers if session_id.startswith(f"session-{server.server_address[1]}-"))


def assert_session_not_found(response: Any, request_id: Any) -> None:
    assert response.status_code == 404
    body = json.loads(response.content)
    assert body["id"] == request_id
    assert body["error"]["code"] == JSONRPC_INVALID_REQUEST
    assert body["error"]["message"] == "Session not found"


def test_session_requests_all_go_to_the_target_that_answered_initialize(client: Any, mcp_route: Route, two_servers: list[UpstreamServer]) -> None:
    session_id = post(client, INITIALIZE)["Mcp-Session-Id"]
    owner = owner_of(session_id, two_servers)
    other = next(server for server in two_servers if server is not owner)
    for _ in range(6):
        assert post(client, TOOLS_LIST, session_id).status_code == 200
    assert client.get("/mcp/echo", headers={"Mcp-Session-Id": session_id}).status_code == 200
    assert len(owner.requests) == 8 and len(other.requests) == 0


def test_modern_requests_without_session_are_balanced(client: Any, mcp_route: Route, two_servers: list[UpstreamServer]) -> None:
    for _ in range(6):
        assert post(client, TOOLS_LIST).status_code == 200
    assert [len(server.requests) for server in two_servers] == [3, 3]


def test_unknown_session_gets_404_and_is_not_forwarded(client: Any, mcp_route: Route, two_servers: list[UpstreamServer]) -> None:
    assert_session_not_found(post(client, TOOLS_LIST, "never-issued"), 1)
    assert all(server.requests == [] for server in two_servers)


def test_delete_ends_the_binding(client: Any, mcp_route: Route, two_servers: list[UpstreamServer]) -> None:
    session_id = post(client, INITIALIZE)["Mcp-Session-Id"]
    assert client.delete("/mcp/echo", headers={"Mcp-Session-Id": session_id}).status_code == 200
    assert_session_not_found(post(client, TOOLS_LIST, session_id), 1)


def test_lost_target_gives_404_then_a_clean_reinitialize(client: Any, mcp_route: Route, two_servers: list[UpstreamServer]) -> None:
    session_id = post(client, INITIALIZE)["Mcp-Session-Id"]
    owner = owner_of(session_id, two_servers)
    owner_target = mcp_route.service.targets.get(url=owner.url)
    get_state_store().set(down_key(owner_target.id), "1")  # the health checker lost it
    assert_session_not_found(post(client, TOOLS_LIST, session_id), 1)
    new_session = post(client, INITIALIZE)["Mcp-Session-Id"]
    assert owner_of(new_session, two_servers) is not owner
    assert post(client, TOOLS_LIST, new_session).status_code == 200


def test_removed_target_gives_404(client: Any, mcp_route: Route, two_servers: list[UpstreamServer]) -> None:
    session_id = post(client, INITIALIZE)["Mcp-Session-Id"]
    mcp_route.service.targets.get(url=owner_of(session_id, two_servers).url).delete()
    assert_session_not_found(post(client, TOOLS_LIST, session_id), 1)


def test_session_binding_slides_with_use(client: Any, mcp_route: Route, settings: Any) -> None:
    settings.GATEWAY_MCP_SESSION_TTL = 600
    session_id = post(client, INITIALIZE)["Mcp-Session-Id"]
    from routing.affinity import _binding_key

    key = _binding_key(mcp_route.id, session_id)
    get_state_store().expire(key, 5)
    post(client, TOOLS_LIST, session_id)
    remaining = get_state_store().ttl(key)
    assert remaining is not None and remaining > 500


def test_session_presented_by_another_principal_is_refused(client: Any, mcp_route: Route) -> None:
    """A session id is not a credential: the binding remembers who opened it."""
    from gateway_project.state import get_state_store as store
    from routing.affinity import _binding_key

    session_id = post(client, INITIALIZE)["Mcp-Session-Id"]
    key = _binding_key(mcp_route.id, session_id)
    target_id, _, principal = (store().get(key) or "").partition("|")
    assert principal == "anonymous"
    store().set(key, f"{target_id}|user:alice")  # opened by alice...
    assert_session_not_found(post(client, TOOLS_LIST, session_id), 1)  # ...presented anonymously
