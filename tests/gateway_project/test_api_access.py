"""Who may use the REST API, how often, and how every refusal is answered (problem+json).

Reads: a staff user (JWT or admin session) or an API key holding api:read. Writes: a staff user,
or an API key holding api:write whose owner is staff. Everything else is 401 or 403.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from authn.errors import WWW_AUTHENTICATE_HEADER
from authn.sessions import end_session
from authn.stages import MALFORMED_BEARER, REVOKED_KEY, SESSION_ENDED, UNKNOWN_KEY
from gateway_project.api import (
    CREDENTIAL_REQUIRED,
    KEY_CANNOT_READ,
    KEY_CANNOT_WRITE,
    KEY_OWNER_NOT_STAFF,
    NOT_STAFF,
    UNSTORABLE_TEXT,
)
from routing.models import Service
from security.api_keys import issue_api_key, revoke_api_key
from tests.api_client import API, ApiClient, jwt_for
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

SERVICES = f"{API}/services/"
NEW_SERVICE = {"name": "billing", "kind": "http"}

# One read of each kind of endpoint: lists, plain views and the configuration document.
READ_ENDPOINTS = [SERVICES, f"{API}/targets/", f"{API}/api-keys/", f"{API}/sessions/", f"{API}/health/", f"{API}/cache-stats/", f"{API}/config/"]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_anonymous_read_gets_401_with_a_bearer_challenge(anonymous_api: ApiClient, path: str) -> None:
    response = anonymous_api.get(path)
    body = assert_problem(response, 401, "credential_required")
    assert body["detail"] == CREDENTIAL_REQUIRED
    assert body["instance"] == path
    assert response[WWW_AUTHENTICATE_HEADER].startswith('Bearer realm="mcp-gateway"')


def test_anonymous_write_gets_401(anonymous_api: ApiClient) -> None:
    assert_problem(anonymous_api.send("post", SERVICES, NEW_SERVICE), 401, "credential_required")
    assert not Service.objects.exists()


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_a_user_who_is_not_staff_gets_403(member_api: ApiClient, path: str) -> None:
    body = assert_problem(member_api.get(path), 403, "forbidden")
    assert body["detail"] == NOT_STAFF


def test_a_user_who_is_not_staff_cannot_write(member_api: ApiClient) -> None:
    assert_problem(member_api.send("post", SERVICES, NEW_SERVICE), 403, "forbidden")
    assert not Service.objects.exists()


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_a_staff_user_reads_every_endpoint(staff_api: ApiClient, path: str) -> None:
    assert staff_api.get(path).status_code == 200


def test_a_staff_user_writes(staff_api: ApiClient) -> None:
    response = staff_api.send("post", SERVICES, NEW_SERVICE)
    assert response.status_code == 201, response.content
    assert Service.objects.get(name="billing").kind == "http"


def test_the_token_endpoint_still_issues_tokens_the_api_accepts(staff_user: User) -> None:
    staff_user.set_password("correct horse")
    staff_user.save()
    client = Client()
    with override_settings(GATEWAY_AUTH_TOKEN_RATE_LIMIT="1000/m"):
        answer = client.post(f"{API}/auth/token/", {"username": "operator", "password": "correct horse"}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    response = client.get(SERVICES, headers={"Authorization": f"Bearer {answer.json()['access']}"})
    assert response.status_code == 200


def test_a_token_of_an_ended_session_gets_401(staff_user: User) -> None:
    access, session_id = jwt_for(staff_user)
    end_session(session_id)
    response = Client().get(SERVICES, headers={"Authorization": f"Bearer {access}"})
    body = assert_problem(response, 401, "invalid_credentials")
    assert body["detail"] == SESSION_ENDED
    assert 'error="invalid_token"' in response[WWW_AUTHENTICATE_HEADER]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Authorization": "Bearer not-a-token"}, MALFORMED_BEARER),
        ({"X-API-Key": "mgw_" + "A" * 43}, UNKNOWN_KEY),
        ({"Authorization": "Bearer mgw_" + "A" * 43}, UNKNOWN_KEY),
    ],
)
def test_a_bad_credential_gets_401_not_anonymous_access(db: Any, headers: dict[str, str], detail: str) -> None:
    body = assert_problem(Client().get(SERVICES, headers=headers), 401, "invalid_credentials")
    assert body["detail"] == detail


def test_the_admin_session_of_a_staff_user_reads(staff_user: User) -> None:
    client = Client()
    client.force_login(staff_user)
    assert client.get(SERVICES).status_code == 200


def test_a_session_write_without_the_csrf_token_is_refused(staff_user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post(SERVICES, json.dumps(NEW_SERVICE), content_type="application/json")
    body = assert_problem(response, 403, "forbidden")
    assert "CSRF" in body["detail"]
    assert not Service.objects.exists()


# --- API keys --------------------------------------------------------------------------------------


def test_a_key_holding_api_read_reads_but_cannot_write(key_api: Callable[..., ApiClient]) -> None:
    reader = key_api(["api:read"])
    assert reader.get(SERVICES).status_code == 200
    body = assert_problem(reader.send("post", SERVICES, NEW_SERVICE), 403, "forbidden")
    assert body["detail"] == KEY_CANNOT_WRITE
    assert not Service.objects.exists()


def test_a_key_without_api_grants_cannot_read(key_api: Callable[..., ApiClient]) -> None:
    body = assert_problem(key_api(["route:*", "tool:*"]).get(SERVICES), 403, "forbidden")
    assert body["detail"] == KEY_CANNOT_READ


def test_a_key_holding_api_write_of_a_staff_owner_writes(key_api: Callable[..., ApiClient]) -> None:
    writer = key_api(["api:read", "api:write"])
    assert writer.send("post", SERVICES, NEW_SERVICE).status_code == 201
    assert Service.objects.filter(name="billing").exists()


def test_a_key_holding_api_write_of_an_owner_who_is_not_staff_cannot_write(
    key_api: Callable[..., ApiClient], member_user: User
) -> None:
    writer = key_api(["api:*"], owner=member_user)
    assert writer.get(SERVICES).status_code == 200
    body = assert_problem(writer.send("post", SERVICES, NEW_SERVICE), 403, "forbidden")
    assert body["detail"] == KEY_OWNER_NOT_STAFF


def test_a_key_is_accepted_as_a_bearer_token_too(staff_user: User) -> None:
    _, key = issue_api_key(name="ci", owner=staff_user, permissions=["api:read"])
    assert Client().get(SERVICES, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_a_revoked_key_gets_401(staff_user: User) -> None:
    api_key, key = issue_api_key(name="ci", owner=staff_user, permissions=["api:read"])
    revoke_api_key(api_key)
    body = assert_problem(Client().get(SERVICES, headers={"X-API-Key": key}), 401, "invalid_credentials")
    assert body["detail"] == REVOKED_KEY


# --- throttling ------------------------------------------------------------------------------------


def test_too_many_requests_get_429_with_retry_after(staff_api: ApiClient, member_api: ApiClient, key_api: Callable[..., ApiClient]) -> None:
    reader = key_api(["api:read"])
    with override_settings(GATEWAY_API_RATE_LIMIT="3/min"):
        assert [staff_api.get(SERVICES).status_code for _ in range(3)] == [200, 200, 200]
        response = staff_api.get(SERVICES)
        body = assert_problem(response, 429, "rate_limited")
        assert 1 <= int(response["Retry-After"]) <= 60
        assert body["detail"].startswith("Too many API requests")
        # Counted per principal: another caller still has its own allowance.
        assert reader.get(SERVICES).status_code == 200


# --- shapes of other refusals ----------------------------------------------------------------------


def test_an_unknown_api_path_is_a_404_here_and_never_proxied(staff_api: ApiClient, make_route: Any, upstream: Any) -> None:
    make_route("/", upstream.url)  # a route that would take any path
    response = staff_api.get(f"{API}/no-such-thing/")
    body = assert_problem(response, 404, "not_found")
    assert body["detail"] == f"No API endpoint at {API}/no-such-thing/"
    assert upstream.requests == []


def test_a_path_without_its_trailing_slash_says_so(staff_api: ApiClient) -> None:
    body = assert_problem(staff_api.get(f"{API}/services"), 404, "not_found")
    assert "end with a slash" in body["detail"]


def test_an_unknown_object_is_a_404(staff_api: ApiClient) -> None:
    assert_problem(staff_api.get(f"{SERVICES}999999/"), 404, "not_found")


def test_a_method_the_endpoint_does_not_take_is_a_405(staff_api: ApiClient) -> None:
    response = staff_api.send("delete", SERVICES)
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_a_body_that_is_not_json_is_a_400(staff_api: ApiClient) -> None:
    response = staff_api.generic("POST", SERVICES, b"{not json", content_type="application/json")
    assert_problem(response, 400, "malformed_body")


@pytest.mark.parametrize("depth", [33, 100_000])
def test_a_body_nested_too_deeply_is_a_400_before_it_is_parsed(staff_api: ApiClient, depth: int) -> None:
    response = staff_api.generic("POST", SERVICES, b"[" * depth + b"]" * depth, content_type="application/json")
    body = assert_problem(response, 400, "malformed_body")
    assert body["detail"] == "The JSON body is nested deeper than 32 levels"


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "x", "health_check_path": "/a\\u0000"}',
        '{"name": "x", "health_check_path": "/a\\ud800"}',
        '{"name": "x", "\\u0000": 1}',
    ],
)
def test_text_no_database_can_store_is_a_400(staff_api: ApiClient, body: str) -> None:
    response = staff_api.generic("POST", SERVICES, body, content_type="application/json")
    problem = assert_problem(response, 400, "malformed_body")
    assert problem["detail"] == UNSTORABLE_TEXT
    assert not Service.objects.exists()


def test_a_body_of_another_media_type_is_a_415(staff_api: ApiClient) -> None:
    response = staff_api.generic("POST", SERVICES, b"name=x", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415, "unsupported_media_type")


def test_a_validation_error_lists_the_fields(staff_api: ApiClient) -> None:
    response = staff_api.send("post", SERVICES, {"name": "not a slug!", "kind": "smtp"})
    body = assert_problem(response, 400, "validation_failed")
    assert set(body["errors"]) == {"name", "kind"}
    assert body["errors"]["kind"] == ['"smtp" is not a valid choice.']


# --- pagination ------------------------------------------------------------------------------------


def test_lists_are_paged_50_by_default_and_500_at_most(staff_api: ApiClient) -> None:
    Service.objects.bulk_create(Service(name=f"s{index:03d}") for index in range(501))
    first = staff_api.get_json(SERVICES)
    assert first["count"] == 501
    assert len(first["results"]) == 50
    assert first["results"][0]["name"] == "s000"
    assert "offset=50" in first["next"]
    assert len(staff_api.get_json(SERVICES, limit=1000)["results"]) == 500
    last = staff_api.get_json(SERVICES, limit=10, offset=495)
    assert [service["name"] for service in last["results"]] == ["s495", "s496", "s497", "s498", "s499", "s500"]
    assert last["next"] is None
