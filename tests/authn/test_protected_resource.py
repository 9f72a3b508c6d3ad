"""RFC 9728 protected-resource metadata: what an MCP client reads after a 401."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from authn.models import IdentityProvider
from gateway_project.errors import PROBLEM_CONTENT_TYPE

METADATA_PATH = "/.well-known/oauth-protected-resource"


def test_metadata_names_the_gateway_as_the_resource(client: Any, db: Any) -> None:
    response = client.get(METADATA_PATH)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "resource": "http://127.0.0.1:8000",
        "authorization_servers": [],
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP gateway",
    }


def test_metadata_lists_the_enabled_identity_providers(client: Any, db: Any) -> None:
    IdentityProvider.objects.create(name="corp", issuer="https://login.corp.example/realms/mcp")
    IdentityProvider.objects.create(name="old", issuer="https://old.example", enabled=False)
    document = json.loads(client.get(METADATA_PATH).content)
    assert document["authorization_servers"] == ["https://login.corp.example/realms/mcp"]


def test_metadata_for_a_route_path_is_the_same_document(client: Any, db: Any) -> None:
    assert json.loads(client.get(f"{METADATA_PATH}/mcp/demo").content)["resource"] == "http://127.0.0.1:8000"


@override_settings(GATEWAY_PUBLIC_URL="https://mcp.example.com")
def test_the_public_url_setting_names_the_resource_and_the_challenge(client: Any, make_route: Any, upstream: Any) -> None:
    make_route("/api", upstream.url, allow_anonymous=False)
    assert json.loads(client.get(METADATA_PATH).content)["resource"] == "https://mcp.example.com"
    challenge = client.get("/api/x", headers={"X-Forwarded-For": "1.2.3.4"})["WWW-Authenticate"]
    assert 'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"' in challenge


@pytest.mark.parametrize("method", ["post", "delete"])
def test_metadata_refuses_writes_with_problem_json(client: Any, db: Any, method: str) -> None:
    response = getattr(client, method)(METADATA_PATH)
    assert response.status_code == 405 and response["Content-Type"] == PROBLEM_CONTENT_TYPE
