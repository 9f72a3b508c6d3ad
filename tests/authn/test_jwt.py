"""The gateway's own JWTs: the token endpoints, exact lifetimes and claims, refresh rotation,
logout, and the attack battery (each refused with 401 before anything reaches the upstream)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from authn import tokens
from authn.errors import WWW_AUTHENTICATE_HEADER, challenge
from authn.models import IdentityProvider, Role
from authn.oidc import UNTRUSTED_ISSUER
from authn.stages import SESSION_ENDED, USER_INACTIVE
from gateway_project.errors import JSONRPC_CONTENT_TYPE, PROBLEM_CONTENT_TYPE
from tests.upstream_server import UpstreamServer

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
LOGOUT_URL = "/api/v1/auth/logout/"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def no_ip_limits() -> Iterator[None]:
    with override_settings(
        GATEWAY_DEFAULT_IP_RATE_LIMIT="0", GATEWAY_AUTH_TOKEN_RATE_LIMIT="1000/m", GATEWAY_AUTH_REFRESH_RATE_LIMIT="1000/m"
    ):
        yield


@pytest.fixture
def alice(db: Any) -> User:
    user = User.objects.create_user("alice", password=PASSWORD)
    Role.objects.create(name="operators", permissions=["route:api", "tool:demo:*"]).users.add(user)
    return user


@pytest.fixture
def api(make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    make_route("/api", upstream.url, allow_anonymous=False)
    return upstream


@pytest.fixture
def mcp(make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    make_route("/mcp", f"{upstream.url}/echo", kind="mcp", allow_anonymous=False, tool_permissions=False)
    return upstream


def login(client: Any, username: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    response = client.post(TOKEN_URL, {"username": username, "password": password}, content_type="application/json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict[str, Any], key: str | None = None, algorithm: str = "HS256", headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_refused(response: Any, detail: str, upstream: UpstreamServer) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert response[WWW_AUTHENTICATE_HEADER] == challenge(detail)
    assert json.loads(response.content)["detail"] == detail
    assert upstream.requests == []


# --- the token endpoint ------------------------------------------------------------------------


def test_login_returns_access_and_refresh_bound_to_a_new_session(client: Any, alice: User) -> None:
    answer = login(client)
    access, refresh = claims_of(answer["access"]), claims_of(answer["refresh"])
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600 and answer["refresh_expires_in"] == 604800
    assert access["userId"] == refresh["userId"] == alice.pk
    assert access["sessionId"] == refresh["sessionId"] == answer["session_id"]
    assert access["roles"] == ["operators"]
    assert access["permissions"] == ["route:api", "tool:demo:*"]
    assert access["iss"] == settings.GATEWAY_JWT_ISSUER
    assert (access["token_type"], refresh["token_type"]) == ("access", "refresh")
    assert access["jti"] and access["jti"] != refresh["jti"]
    assert jwt.get_unverified_header(answer["access"])["alg"] == "HS256"


def test_access_lives_exactly_one_hour_and_refresh_exactly_seven_days(client: Any, alice: User) -> None:
    answer = login(client)
    access, refresh = claims_of(answer["access"]), claims_of(answer["refresh"])
    assert access["exp"] - access["iat"] == 3600
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    assert abs(access["iat"] - time.time()) < 5


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "alice", "password": "wrong"}, 401),
        ({"username": "nobody", "password": PASSWORD}, 401),
        ({"username": "alice"}, 400),
        ({"username": ["alice"], "password": PASSWORD}, 400),
    ],
)
def test_bad_logins_get_problem_json_and_no_session(client: Any, alice: User, body: dict[str, Any], status: int) -> None:
    response = client.post(TOKEN_URL, body, content_type="application/json")
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert alice.gateway_sessions.count() == 0


def test_login_of_a_deactivated_user_gets_401(client: Any, alice: User) -> None:
    alice.is_active = False
    alice.save()
    response = client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD}, content_type="application/json")
    assert response.status_code == 401


def test_token_endpoint_takes_a_form_post_too(client: Any, alice: User) -> None:
    response = client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200 and "access" in json.loads(response.content)


def test_token_endpoint_refuses_get_and_a_non_json_body(client: Any, alice: User) -> None:
    assert client.get(TOKEN_URL).status_code == 405
    response = client.post(TOKEN_URL, "{not json", content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == PROBLEM_CONTENT_TYPE


def test_token_endpoint_is_rate_limited_per_ip(client: Any, alice: User) -> None:
    with override_settings(GATEWAY_AUTH_TOKEN_RATE_LIMIT="3/m"):
        statuses = [
            client.post(TOKEN_URL, {"username": "alice", "password": "wrong"}, content_type="application/json").status_code
            for _ in range(4)
        ]
    assert statuses == [401, 401, 401, 429]


# --- using the access token --------------------------------------------------------------------


def test_access_token_reaches_the_upstream_without_the_credential(client: Any, alice: User, api: UpstreamServer) -> None:
    access = login(client)["access"]
    response = client.get("/api/echo", headers=bearer(access))
    assert response.status_code == 200
    forwarded = api.requests[0]["headers"]
    assert isinstance(forwarded, dict)
    assert "Authorization" not in forwarded and access not in json.dumps(forwarded)


def test_no_credential_on_a_protected_route_gets_401_with_resource_metadata(client: Any, api: UpstreamServer) -> None:
    response = client.get("/api/echo")
    assert response.status_code == 401
    assert response[WWW_AUTHENTICATE_HEADER] == (
        'Bearer realm="mcp-gateway", resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource"'
    )
    assert api.requests == []


def test_no_credential_on_a_protected_mcp_route_gets_a_jsonrpc_error_with_its_id(client: Any, mcp: UpstreamServer) -> None:
    message = {"jsonrpc": "2.0", "id": "x1", "method": "tools/list"}
    response = client.post("/mcp", json.dumps(message), content_type="application/json")
    assert response.status_code == 401 and response["Content-Type"] == JSONRPC_CONTENT_TYPE
    assert json.loads(response.content)["id"] == "x1"
    assert "resource_metadata=" in response[WWW_AUTHENTICATE_HEADER]


def test_a_warm_jwt_request_makes_no_database_query(
    client: Any, alice: User, api: UpstreamServer, django_assert_num_queries: Any
) -> None:
    access = login(client)["access"]
    assert client.get("/api/echo", headers=bearer(access)).status_code == 200
    with django_assert_num_queries(0):
        assert client.get("/api/echo", headers=bearer(access)).status_code == 200


def test_deactivating_the_user_stops_their_token_at_once(client: Any, alice: User, api: UpstreamServer) -> None:
    access = login(client)["access"]
    alice.is_active = False
    alice.save()
    assert_refused(client.get("/api/echo", headers=bearer(access)), USER_INACTIVE, api)


# --- the attack battery ------------------------------------------------------------------------


def valid_claims(client: Any) -> dict[str, Any]:
    """The claims of a real access token, to forge variations of."""
    return claims_of(login(client)["access"])


def forge_alg_none(claims: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def forge_hs256_with_rsa_public_key(claims: dict[str, Any]) -> str:
    """The classic confusion: HS256 'signed' with an RSA public key (which an attacker knows)."""
    public_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def forge_rs256(claims: dict[str, Any]) -> str:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, private_key, algorithm="RS256")


def forge_tampered(claims: dict[str, Any], client: Any) -> str:
    """A real token whose payload is edited (another user id), signature kept."""
    real = login(client)["access"]
    header, _, signature = real.split(".")
    return f"{header}.{b64(json.dumps({**claims, 'userId': claims['userId'] + 1}).encode())}.{signature}"


def test_alg_none_is_refused(client: Any, alice: User, api: UpstreamServer) -> None:
    token = forge_alg_none(valid_claims(client))
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.BAD_ALGORITHM, api)


def test_hs256_signed_with_an_rsa_public_key_is_refused(client: Any, alice: User, api: UpstreamServer) -> None:
    token = forge_hs256_with_rsa_public_key(valid_claims(client))
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.BAD_SIGNATURE, api)


def test_rs256_token_is_refused_whatever_key_signed_it(client: Any, alice: User, api: UpstreamServer) -> None:
    token = forge_rs256(valid_claims(client))
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.BAD_ALGORITHM, api)


def test_forged_signature_is_refused(client: Any, alice: User, api: UpstreamServer) -> None:
    token = sign(valid_claims(client), key="another secret that is at least 32 bytes long")
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.BAD_SIGNATURE, api)


def test_expired_token_gets_401(client: Any, alice: User, api: UpstreamServer) -> None:
    claims = valid_claims(client)
    token = sign({**claims, "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600})
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.EXPIRED, api)


def test_token_of_another_issuer_gets_401(client: Any, alice: User, api: UpstreamServer) -> None:
    token = sign({**valid_claims(client), "iss": "https://evil.example"})
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.WRONG_ISSUER, api)


def test_token_of_another_issuer_gets_401_also_when_external_issuers_are_trusted(
    client: Any, alice: User, api: UpstreamServer
) -> None:
    IdentityProvider.objects.create(name="corp", issuer="https://login.corp.example", jwks_url="https://login.corp.example/jwks")
    token = sign({**valid_claims(client), "iss": "https://evil.example"})
    assert_refused(client.get("/api/echo", headers=bearer(token)), UNTRUSTED_ISSUER, api)


def test_refresh_token_used_as_access_token_gets_401(client: Any, alice: User, api: UpstreamServer) -> None:
    refresh = login(client)["refresh"]
    assert_refused(client.get("/api/echo", headers=bearer(refresh)), tokens.REFRESH_AS_ACCESS, api)


def test_token_of_an_ended_session_gets_401(client: Any, alice: User, api: UpstreamServer) -> None:
    access = login(client)["access"]
    assert client.post(LOGOUT_URL, headers=bearer(access)).status_code == 204
    assert_refused(client.get("/api/echo", headers=bearer(access)), SESSION_ENDED, api)


def test_tampered_claims_get_401(client: Any, alice: User, api: UpstreamServer) -> None:
    token = forge_tampered(valid_claims(client), client)
    assert_refused(client.get("/api/echo", headers=bearer(token)), tokens.BAD_SIGNATURE, api)


def test_token_without_a_session_claim_gets_401(client: Any, alice: User, api: UpstreamServer) -> None:
    claims = valid_claims(client)
    del claims["sessionId"]
    assert_refused(client.get("/api/echo", headers=bearer(sign(claims))), tokens.MISSING_CLAIM.format(claim="sessionId"), api)


# --- refresh and logout ------------------------------------------------------------------------


def refresh(client: Any, refresh_token: str) -> Any:
    return client.post(REFRESH_URL, {"refresh": refresh_token}, content_type="application/json")


def test_refresh_rotates_and_the_used_refresh_token_is_blacklisted(client: Any, alice: User, api: UpstreamServer) -> None:
    first = login(client)
    second = refresh(client, first["refresh"])
    assert second.status_code == 200
    rotated = json.loads(second.content)
    assert rotated["refresh"] != first["refresh"] and rotated["access"] != first["access"]
    assert claims_of(rotated["access"])["sessionId"] == first["session_id"]
    assert client.get("/api/echo", headers=bearer(rotated["access"])).status_code == 200
    reused = refresh(client, first["refresh"])
    assert reused.status_code == 401 and "blacklisted" in json.loads(reused.content)["detail"]
    assert refresh(client, rotated["refresh"]).status_code == 200


def test_access_token_cannot_be_used_to_refresh(client: Any, alice: User) -> None:
    response = refresh(client, login(client)["access"])
    assert response.status_code == 401 and response["Content-Type"] == PROBLEM_CONTENT_TYPE


def test_refresh_after_logout_gets_401(client: Any, alice: User) -> None:
    answer = login(client)
    assert client.post(LOGOUT_URL, {"refresh": answer["refresh"]}, content_type="application/json").status_code == 204
    response = refresh(client, answer["refresh"])
    assert response.status_code == 401 and json.loads(response.content)["detail"] == SESSION_ENDED


def test_logout_ends_only_its_own_session(client: Any, alice: User, api: UpstreamServer) -> None:
    laptop, phone = login(client), login(client)
    assert client.post(LOGOUT_URL, headers=bearer(laptop["access"])).status_code == 204
    assert client.get("/api/echo", headers=bearer(laptop["access"])).status_code == 401
    assert client.get("/api/echo", headers=bearer(phone["access"])).status_code == 200


def test_logout_without_a_token_gets_401(client: Any, alice: User) -> None:
    response = client.post(LOGOUT_URL)
    assert response.status_code == 401 and response["Content-Type"] == PROBLEM_CONTENT_TYPE


# --- start-up checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "check_id"),
    [
        ("ACCESS_TOKEN_LIFETIME", "2h", "authn.E001"),
        ("ACCESS_TOKEN_LIFETIME", "59m", "authn.E001"),
        ("REFRESH_TOKEN_LIFETIME", "8d", "authn.E002"),
        ("ALGORITHM", "RS256", "authn.E003"),
    ],
)
def test_other_token_lifetimes_or_algorithms_are_refused_at_start_up(name: str, value: str, check_id: str) -> None:
    from datetime import timedelta

    from authn.checks import token_lifetimes_are_fixed

    values = {"2h": timedelta(hours=2), "59m": timedelta(minutes=59), "8d": timedelta(days=8), "RS256": "RS256"}
    with override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, name: values[value]}):
        assert [error.id for error in token_lifetimes_are_fixed()] == [check_id]
    assert token_lifetimes_are_fixed() == []


def test_a_local_public_url_is_flagged_in_production() -> None:
    from authn.checks import public_url_is_set_in_production

    with override_settings(IS_PRODUCTION=True, GATEWAY_PUBLIC_URL="http://127.0.0.1:8000"):
        assert [warning.id for warning in public_url_is_set_in_production()] == ["authn.W001"]
    with override_settings(IS_PRODUCTION=True, GATEWAY_PUBLIC_URL="https://mcp.example.com"):
        assert public_url_is_set_in_production() == []


def test_the_access_log_names_the_principal_never_the_token(
    client: Any, alice: User, api: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    access = login(client)["access"]
    with caplog.at_level("INFO", logger="gateway.access"):
        client.get("/api/echo", headers=bearer(access))
    line = caplog.records[-1].getMessage()
    assert f"principal=user:{alice.pk} " in line and access not in line
