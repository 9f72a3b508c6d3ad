"""Authorization: route permissions, tool/prompt/resource permissions, 401 vs 403."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from authn.authorization import ROUTE_NEEDS, TOOL_NOT_ALLOWED
from authn.errors import JSONRPC_FORBIDDEN
from authn.models import Role
from authn.permissions import Grants
from gateway_project.errors import JSONRPC_CONTENT_TYPE, PROBLEM_CONTENT_TYPE
from security.api_keys import issue_api_key
from tests.upstream_server import UpstreamServer


@pytest.fixture(autouse=True)
def no_ip_limits() -> Iterator[None]:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0", GATEWAY_AUTH_TOKEN_RATE_LIMIT="1000/m"):
        yield


def key_with(*grants: str) -> dict[str, str]:
    _, key = issue_api_key(name="k", permissions=list(grants))
    return {"Authorization": f"Bearer {key}"}


def call(client: Any, tool: str, headers: dict[str, str], method: str = "tools/call") -> Any:
    params: dict[str, Any] = {"uri": tool} if method == "resources/read" else {"name": tool, "arguments": {}}
    message = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
    return client.post("/mcp", json.dumps(message), content_type="application/json", headers=headers)


@pytest.fixture
def mcp(make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    make_route("/mcp", f"{upstream.url}/echo", name="calc", kind="mcp", allow_anonymous=False, tool_permissions=True)
    return upstream


def test_tool_call_with_the_tool_granted_is_forwarded(client: Any, mcp: UpstreamServer, db: Any) -> None:
    assert call(client, "add", key_with("tool:calc:add")).status_code == 200
    assert len(mcp.requests) == 1


def test_tool_call_without_the_tool_granted_gets_403_jsonrpc_error(client: Any, mcp: UpstreamServer, db: Any) -> None:
    response = call(client, "delete_everything", key_with("tool:calc:add"))
    assert response.status_code == 403 and response["Content-Type"] == JSONRPC_CONTENT_TYPE
    assert json.loads(response.content) == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {
            "code": JSONRPC_FORBIDDEN,
            "message": TOOL_NOT_ALLOWED.format(name="delete_everything"),
            "data": {"status": 403, "type": "forbidden"},
        },
    }
    assert mcp.requests == []


@pytest.mark.parametrize(
    ("grant", "allowed"),
    [
        ("tool:calc:*", True),
        ("tool:*", True),
        ("tool:*:add", True),
        ("tool:calc:ad*", True),
        ("*", True),
        ("tool:other:add", False),
        ("tool:calc:addition", False),
        ("prompt:calc:add", False),
    ],
)
def test_tool_grants_match_with_wildcards(client: Any, mcp: UpstreamServer, db: Any, grant: str, allowed: bool) -> None:
    assert call(client, "add", key_with(grant)).status_code == (200 if allowed else 403)


def test_prompts_and_resources_need_their_own_grants(client: Any, mcp: UpstreamServer, db: Any) -> None:
    headers = key_with("prompt:calc:greet", "resource:calc:demo://readme")
    assert call(client, "greet", headers, method="prompts/get").status_code == 200
    assert call(client, "other", headers, method="prompts/get").status_code == 403
    assert call(client, "demo://readme", headers, method="resources/read").status_code == 200
    assert call(client, "demo://secret", headers, method="resources/read").status_code == 403


def test_lists_and_initialize_need_no_tool_grant(client: Any, mcp: UpstreamServer, db: Any) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    response = client.post("/mcp", json.dumps(message), content_type="application/json", headers=key_with())
    assert response.status_code == 200


def test_route_without_tool_permissions_lets_any_caller_call_any_tool(
    client: Any, make_route: Any, upstream: UpstreamServer, db: Any
) -> None:
    make_route("/mcp", f"{upstream.url}/echo", kind="mcp", allow_anonymous=False, tool_permissions=False)
    assert call(client, "anything", key_with()).status_code == 200


def test_route_requiring_a_permission_refuses_callers_without_it(
    client: Any, make_route: Any, upstream: UpstreamServer, db: Any
) -> None:
    make_route("/billing", upstream.url, name="billing", allow_anonymous=False, required_permissions=["route:billing"])
    refused = client.get("/billing/echo", headers=key_with("route:other"))
    assert refused.status_code == 403 and refused["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(refused.content)["detail"] == ROUTE_NEEDS.format(permission="route:billing")
    assert client.get("/billing/echo", headers=key_with("route:*")).status_code == 200
    assert len(upstream.requests) == 1


def test_anonymous_caller_lacking_a_permission_on_an_open_route_is_asked_to_sign_in(
    client: Any, make_route: Any, upstream: UpstreamServer, db: Any
) -> None:
    make_route("/mcp", f"{upstream.url}/echo", name="calc", kind="mcp", allow_anonymous=True, tool_permissions=True)
    response = call(client, "add", {})
    assert response.status_code == 401 and "resource_metadata=" in response["WWW-Authenticate"]
    assert upstream.requests == []


def test_user_grants_come_from_roles_and_change_without_a_new_token(
    client: Any, mcp: UpstreamServer, db: Any
) -> None:
    user = User.objects.create_user("bob", password="pw-for-bob-123456")
    role = Role.objects.create(name="adders", permissions=["tool:calc:add"])
    role.users.add(user)
    answer = client.post("/api/v1/auth/token/", {"username": "bob", "password": "pw-for-bob-123456"}, content_type="application/json")
    headers = {"Authorization": f"Bearer {json.loads(answer.content)['access']}"}
    assert call(client, "add", headers).status_code == 200
    role.permissions = ["tool:calc:sub"]
    role.save()
    assert call(client, "add", headers).status_code == 403
    assert call(client, "sub", headers).status_code == 200


def test_superusers_hold_every_grant(client: Any, mcp: UpstreamServer, db: Any) -> None:
    User.objects.create_superuser("root", password="pw-for-root-123456")
    answer = client.post("/api/v1/auth/token/", {"username": "root", "password": "pw-for-root-123456"}, content_type="application/json")
    headers = {"Authorization": f"Bearer {json.loads(answer.content)['access']}"}
    assert call(client, "whatever", headers).status_code == 200


@pytest.mark.parametrize(
    ("grant", "permission", "allowed"),
    [
        ("*", "resource:svc:file:///etc/hosts", True),
        ("resource:svc:file:///*", "resource:svc:file:///tmp/x", True),
        ("tool:*", "tool:svc", True),
        ("tool:svc:*", "tool:svc", False),
        ("route:api", "route:api", True),
        ("route:api", "route:apis", False),
        ("tool:*:read_*", "tool:files:read_file", True),
        ("tool:*:read_*", "tool:files:write_file", False),
    ],
)
def test_grant_patterns(grant: str, permission: str, allowed: bool) -> None:
    assert Grants.of([grant]).allows(permission) is allowed
