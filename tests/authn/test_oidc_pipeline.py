"""External identity providers' tokens on the real request path (Django test client, real
upstream, real provider endpoint): accepted to the upstream with the grants they map to, refused
with the exact 401 contract, and no database query once warm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from authn import jwks
from authn.errors import WWW_AUTHENTICATE_HEADER, challenge
from authn.models import IdentityProvider, Role
from authn.oidc import EXPIRED, UNKNOWN_SIGNING_KEY, WRONG_AUDIENCE
from gateway_project.errors import JSONRPC_SERVER_ERROR
from tests.authn.jwks_server import JwksServer, SigningKey, claims_for, rsa_key
from tests.error_assertions import assert_jsonrpc_error, assert_problem
from tests.upstream_server import UpstreamServer


@pytest.fixture(autouse=True)
def fresh_keys_and_no_ip_limit() -> Iterator[None]:
    jwks.signing_keys.clear()
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield
    jwks.signing_keys.clear()


@pytest.fixture
def signing_key() -> SigningKey:
    return rsa_key("kc-1")


@pytest.fixture
def idp(db: Any, signing_key: SigningKey) -> Iterator[JwksServer]:
    """A Keycloak-shaped provider: its endpoint, and the row that trusts it."""
    server = JwksServer([signing_key]).start()
    IdentityProvider.objects.create(
        name="keycloak", issuer=server.issuer, jwks_url=server.jwks_url, roles_claim="realm_access.roles"
    )
    Role.objects.create(name="billing-clerk", permissions=["route:billing"])
    yield server
    server.stop()


@pytest.fixture
def billing(make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    """A route that needs a credential and the route:billing grant."""
    make_route("/billing", upstream.url, name="billing", allow_anonymous=False, required_permissions=["route:billing"])
    return upstream


def bearer(idp: JwksServer, key: SigningKey, **claims: Any) -> dict[str, str]:
    token = key.sign(claims_for(idp.issuer, settings.GATEWAY_PUBLIC_URL, **claims))
    return {"Authorization": f"Bearer {token}"}


def test_external_token_with_a_mapped_role_reaches_the_upstream(
    client: Any, idp: JwksServer, signing_key: SigningKey, billing: UpstreamServer
) -> None:
    clerk = bearer(idp, signing_key, realm_access={"roles": ["billing-clerk"]})
    response = client.get("/billing/echo", headers=clerk)

    assert response.status_code == 200
    forwarded = {name.lower() for name in json.loads(response.content)["headers"]}
    assert "authorization" not in forwarded  # the client's credential stays at the gateway
    # Authenticated but without the role: the route's permission is missing, so 403, not 401.
    outsider = client.get("/billing/echo", headers=bearer(idp, signing_key, subject="mallory"))
    assert_problem(outsider, 403, "forbidden")
    assert len(billing.requests) == 1


@pytest.mark.parametrize(
    ("claims", "detail"),
    [({"exp": 1_000_000}, EXPIRED), ({"aud": "https://other.example/api"}, WRONG_AUDIENCE)],
    ids=["expired", "wrong-audience"],
)
def test_refused_external_token_gets_401_problem_json_with_a_challenge(
    client: Any, idp: JwksServer, signing_key: SigningKey, billing: UpstreamServer, claims: dict[str, Any], detail: str
) -> None:
    response = client.get("/billing/echo", headers=bearer(idp, signing_key, **claims))

    body = assert_problem(response, 401, "invalid_credentials")
    assert body["detail"] == detail
    assert response[WWW_AUTHENTICATE_HEADER] == challenge(detail)
    assert billing.requests == []


def test_token_signed_by_an_unpublished_key_on_an_mcp_route_gets_a_jsonrpc_401(
    client: Any, idp: JwksServer, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/mcp", f"{upstream.url}/echo", kind="mcp", allow_anonymous=False)
    message = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}

    response = client.post(
        "/mcp", json.dumps(message), content_type="application/json", headers=bearer(idp, rsa_key("not-published"))
    )

    body = assert_jsonrpc_error(response, 401, "invalid_credentials", 9, JSONRPC_SERVER_ERROR)
    assert body["error"]["message"] == UNKNOWN_SIGNING_KEY
    assert response[WWW_AUTHENTICATE_HEADER] == challenge(UNKNOWN_SIGNING_KEY)
    assert upstream.requests == []


def test_warm_request_with_an_external_token_makes_zero_database_queries_and_no_key_fetch(
    client: Any, idp: JwksServer, signing_key: SigningKey, billing: UpstreamServer, django_assert_num_queries: Any
) -> None:
    clerk = bearer(idp, signing_key, realm_access={"roles": ["billing-clerk"]})
    assert client.get("/billing/echo", headers=clerk).status_code == 200  # warms every cache

    with django_assert_num_queries(0):
        assert client.get("/billing/echo", headers=clerk).status_code == 200
    assert idp.fetches() == 1
