"""The authn REST API: sessions (listed, filtered, ended everywhere at once), roles and identity
providers; and the api:read / api:write grants the REST API itself asks of API keys."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from authn.api import SESSION_NOT_LIVE
from authn.directory import find_user
from authn.models import ALGORITHMS_MESSAGE, GatewaySession, IdentityProvider, Role
from authn.permissions import Grants
from authn.stages import SESSION_ENDED
from tests.api_client import API, ApiClient, jwt_for
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

SESSIONS = f"{API}/sessions/"
ROLES = f"{API}/roles/"
PROVIDERS = f"{API}/identity-providers/"


# --- the api grants --------------------------------------------------------------------------------


@pytest.mark.parametrize("grant", ["api:read", "api:write", "api:*"])
def test_api_grants_are_valid_grants(db: Any, grant: str) -> None:
    Role(name="automation", permissions=[grant]).full_clean()


def test_an_unknown_kind_of_grant_is_still_refused(db: Any) -> None:
    with pytest.raises(ValidationError, match="use one of route, tool, prompt, resource, api"):
        Role(name="automation", permissions=["apis:read"]).full_clean()


def test_api_star_allows_reading_and_writing_and_nothing_else() -> None:
    grants = Grants.of(["api:*"])
    assert grants.allows("api:read") and grants.allows("api:write")
    assert not grants.allows("route:orders")


# --- sessions --------------------------------------------------------------------------------------


def test_sessions_are_listed_and_filtered_by_user_and_activity(staff_api: ApiClient, member_user: User) -> None:
    _, live = jwt_for(member_user)
    _, ended = jwt_for(member_user)
    staff_api.send("post", f"{SESSIONS}{ended}/end/")
    mine = staff_api.get_json(SESSIONS, user="member")["results"]
    assert {s["id"] for s in mine} == {live, ended}
    assert all(s["user"] == "member" for s in mine)
    assert [s["id"] for s in staff_api.get_json(SESSIONS, user="member", active="true")["results"]] == [live]
    assert [s["id"] for s in staff_api.get_json(SESSIONS, user="member", active="false")["results"]] == [ended]


def test_ending_a_session_stops_its_tokens_at_once(staff_api: ApiClient, staff_user: User) -> None:
    access, session_id = jwt_for(staff_user)
    victim = Client(headers={"Authorization": f"Bearer {access}"})
    assert victim.get(SESSIONS).status_code == 200
    answer = staff_api.send("post", f"{SESSIONS}{session_id}/end/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["active"] is False and answer.json()["ended_at"] is not None
    assert GatewaySession.objects.get(pk=session_id).ended_at is not None
    problem = assert_problem(victim.get(SESSIONS), 401, "invalid_credentials")
    assert problem["detail"] == SESSION_ENDED


def test_ending_an_ended_session_is_a_conflict(staff_api: ApiClient, member_user: User) -> None:
    _, session_id = jwt_for(member_user)
    staff_api.send("post", f"{SESSIONS}{session_id}/end/")
    problem = assert_problem(staff_api.send("post", f"{SESSIONS}{session_id}/end/"), 409, "conflict")
    assert problem["detail"] == SESSION_NOT_LIVE


def test_ending_an_unknown_session_is_a_404(staff_api: ApiClient) -> None:
    assert_problem(staff_api.send("post", f"{SESSIONS}no-such-session/end/"), 404, "not_found")


@pytest.mark.parametrize("session_id", ["%00", "a%ED%A0%80", "a.b"])
def test_a_session_id_of_other_characters_is_a_404(staff_api: ApiClient, session_id: str) -> None:
    assert_problem(staff_api.get(f"{SESSIONS}{session_id}/"), 404, "not_found")


def test_sessions_cannot_be_created_or_edited_through_the_api(staff_api: ApiClient, member_user: User) -> None:
    _, session_id = jwt_for(member_user)
    assert_problem(staff_api.send("post", SESSIONS, {"user": "member"}), 405, "method_not_allowed")
    assert_problem(staff_api.send("delete", f"{SESSIONS}{session_id}/"), 405, "method_not_allowed")


def test_a_read_only_key_cannot_end_a_session(key_api: Any, member_user: User) -> None:
    _, session_id = jwt_for(member_user)
    assert_problem(key_api(["api:read"]).send("post", f"{SESSIONS}{session_id}/end/"), 403, "forbidden")
    assert GatewaySession.objects.get(pk=session_id).ended_at is None


# --- roles -----------------------------------------------------------------------------------------


def test_a_role_given_to_a_user_is_in_the_directory_at_once(staff_api: ApiClient, member_user: User) -> None:
    response = staff_api.send("post", ROLES, {"name": "billing", "permissions": ["route:billing"], "users": ["member"]})
    assert response.status_code == 201, response.content
    assert response.json()["users"] == ["member"]
    cached = find_user(member_user.pk)
    assert cached is not None and cached.grants.allows("route:billing")
    staff_api.send("patch", f"{ROLES}{response.json()['id']}/", {"users": []})
    cached = find_user(member_user.pk)
    assert cached is not None and not cached.grants.allows("route:billing")


def test_a_role_with_a_bad_grant_is_refused(staff_api: ApiClient) -> None:
    problem = assert_problem(staff_api.send("post", ROLES, {"name": "bad", "permissions": "route:x"}), 400, "validation_failed")
    assert problem["errors"]["permissions"] == ['Give a JSON list of strings, e.g. ["route:demo", "tool:demo:*", "prompt:demo:greet", "resource:demo:demo://*"]; "*" is everything.']
    assert not Role.objects.exists()


def test_a_role_naming_an_unknown_user_is_refused(staff_api: ApiClient) -> None:
    problem = assert_problem(staff_api.send("post", ROLES, {"name": "r", "users": ["ghost"]}), 400, "validation_failed")
    assert problem["errors"] == {"users": ["Object with username=ghost does not exist."]}


# --- identity providers ----------------------------------------------------------------------------


def test_an_identity_provider_is_created_and_filtered(staff_api: ApiClient) -> None:
    body = {"name": "keycloak", "issuer": "https://id.example/realms/main", "algorithms": ["RS256"], "enabled": False}
    assert staff_api.send("post", PROVIDERS, body).status_code == 201
    assert [p["name"] for p in staff_api.get_json(PROVIDERS, enabled="false")["results"]] == ["keycloak"]
    assert staff_api.get_json(PROVIDERS, enabled="true")["results"] == []
    assert IdentityProvider.objects.get().issuer == "https://id.example/realms/main"


def test_a_provider_with_a_shared_secret_algorithm_is_refused(staff_api: ApiClient) -> None:
    body = {"name": "bad", "issuer": "https://id.example", "algorithms": ["HS256"]}
    problem = assert_problem(staff_api.send("post", PROVIDERS, body), 400, "validation_failed")
    assert "no HS*" in problem["errors"]["algorithms"][0]
    assert not IdentityProvider.objects.exists()


@pytest.mark.parametrize("algorithms", [[{}], [["RS256"]], "RS256"])
def test_algorithms_that_are_not_a_list_of_names_get_the_admins_message(staff_api: ApiClient, algorithms: Any) -> None:
    body = {"name": "odd", "issuer": "https://id.example", "algorithms": algorithms}
    problem = assert_problem(staff_api.send("post", PROVIDERS, body), 400, "validation_failed")
    assert problem["errors"] == {"algorithms": [ALGORITHMS_MESSAGE]}
