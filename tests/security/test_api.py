"""The security REST API: rate-limit policies (effective at once on live traffic) and API keys
(the secret shown once on create and rotate, never stored in clear; revoke stops the key at once)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from authn.stages import REVOKED_KEY, UNKNOWN_KEY
from security.api import REVOKED_KEY_NOT_ROTATED
from security.api_keys import API_KEY_PATTERN, hash_key, issue_api_key, revoke_api_key
from security.models import SLIDING_WINDOW_NEEDS, TOKEN_BUCKET_NEEDS, ApiKey, RateLimitPolicy
from tests.api_client import API, ApiClient
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

POLICIES = f"{API}/rate-limit-policies/"
KEYS = f"{API}/api-keys/"


@pytest.fixture(autouse=True)
def no_default_ip_limit() -> Any:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


@pytest.fixture
def orders_route(make_route: Any, upstream: Any) -> Any:
    return make_route("/orders", upstream.url, name="orders")


# --- rate-limit policies ---------------------------------------------------------------------------


def test_a_policy_created_through_the_api_limits_its_route_at_once(staff_api: ApiClient, orders_route: Any) -> None:
    body = {"name": "orders-per-ip", "scope": "ip", "limit": 1, "window_seconds": 60, "routes": ["orders"]}
    response = staff_api.send("post", POLICIES, body)
    assert response.status_code == 201, response.content
    assert response.json()["routes"] == ["orders"]
    proxied = Client()
    assert proxied.get("/orders/echo").status_code == 200
    assert proxied.get("/orders/echo").status_code == 429


def test_a_disabled_policy_stops_limiting_at_once(staff_api: ApiClient, orders_route: Any) -> None:
    policy = RateLimitPolicy.objects.create(name="tight", scope="ip", limit=1, window_seconds=60)
    proxied = Client()
    proxied.get("/orders/echo")
    assert proxied.get("/orders/echo").status_code == 429
    assert staff_api.send("patch", f"{POLICIES}{policy.pk}/", {"enabled": False}).status_code == 200
    assert proxied.get("/orders/echo").status_code == 200


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"algorithm": "sliding_window", "limit": 10}, {"window_seconds": [SLIDING_WINDOW_NEEDS]}),
        ({"algorithm": "token_bucket", "burst": 5}, {"rate_per_second": [TOKEN_BUCKET_NEEDS]}),
        ({"algorithm": "sliding_window", "limit": 0, "window_seconds": 1}, {"limit": ["Ensure this value is greater than or equal to 1."]}),
        ({"limit": 1, "window_seconds": 1, "routes": ["nope"]}, {"routes": ["Object with name=nope does not exist."]}),
        ({"limit": 1, "window_seconds": 1, "scope": "planet"}, {"scope": ['"planet" is not a valid choice.']}),
    ],
)
def test_a_bad_policy_is_refused_with_the_admins_message(staff_api: ApiClient, body: dict[str, Any], errors: dict[str, Any]) -> None:
    problem = assert_problem(staff_api.send("post", POLICIES, {"name": "p", **body}), 400, "validation_failed")
    assert problem["errors"] == errors
    assert not RateLimitPolicy.objects.exists()


def test_policies_are_filtered_by_scope_and_enabled(staff_api: ApiClient) -> None:
    RateLimitPolicy.objects.create(name="a", scope="ip", limit=1, window_seconds=1)
    RateLimitPolicy.objects.create(name="b", scope="user", limit=1, window_seconds=1, enabled=False)
    assert [p["name"] for p in staff_api.get_json(POLICIES, scope="user")["results"]] == ["b"]
    assert [p["name"] for p in staff_api.get_json(POLICIES, enabled="true")["results"]] == ["a"]


def test_a_policy_is_deleted(staff_api: ApiClient) -> None:
    policy = RateLimitPolicy.objects.create(name="a", scope="ip", limit=1, window_seconds=1)
    assert staff_api.send("delete", f"{POLICIES}{policy.pk}/").status_code == 204
    assert not RateLimitPolicy.objects.exists()


# --- API keys --------------------------------------------------------------------------------------


def test_a_created_key_is_shown_once_and_stored_as_a_hash(staff_api: ApiClient, staff_user: User) -> None:
    response = staff_api.send("post", KEYS, {"name": "ci", "permissions": ["route:orders"]})
    assert response.status_code == 201, response.content
    answer = response.json()
    key = answer["key"]
    assert API_KEY_PATTERN.fullmatch(key)
    stored = ApiKey.objects.get()
    assert stored.key_hash == hash_key(key)
    assert key[4:12] == answer["key_prefix"] == stored.key_prefix
    assert stored.owner == staff_user  # by default, whoever creates it
    for listing in (staff_api.get(KEYS), staff_api.get(f"{KEYS}{stored.pk}/")):
        text = listing.content.decode()
        assert key not in text and stored.key_hash not in text and '"key"' not in text


def test_a_created_key_works_on_a_route_at_once(staff_api: ApiClient, make_route: Any, upstream: Any) -> None:
    make_route("/private", upstream.url, allow_anonymous=False)
    key = staff_api.send("post", KEYS, {"name": "ci"}).json()["key"]
    assert Client().get("/private/echo", headers={"X-API-Key": key}).status_code == 200


def test_a_key_may_be_given_another_owner(staff_api: ApiClient, member_user: User) -> None:
    answer = staff_api.send("post", KEYS, {"name": "ci", "owner": "member"}).json()
    assert answer["owner"] == "member"
    assert ApiKey.objects.get().owner == member_user


def test_a_key_with_bad_grants_is_refused(staff_api: ApiClient) -> None:
    problem = assert_problem(staff_api.send("post", KEYS, {"name": "ci", "permissions": ["everything"]}), 400, "validation_failed")
    assert problem["errors"]["permissions"][0].startswith("Bad grant: 'everything' starts with 'everything'")
    assert not ApiKey.objects.exists()


def test_rotating_a_key_shows_the_new_one_once_and_stops_the_old_one(staff_api: ApiClient, staff_user: User) -> None:
    api_key, old = issue_api_key(name="ci", owner=staff_user, permissions=["api:read"])
    response = staff_api.send("post", f"{KEYS}{api_key.pk}/rotate/")
    assert response.status_code == 200, response.content
    new = response.json()["key"]
    assert new != old and API_KEY_PATTERN.fullmatch(new)
    assert Client().get(KEYS, headers={"X-API-Key": new}).status_code == 200
    problem = assert_problem(Client().get(KEYS, headers={"X-API-Key": old}), 401, "invalid_credentials")
    assert problem["detail"] == UNKNOWN_KEY


def test_revoking_a_key_stops_it_at_once_and_for_good(staff_api: ApiClient, staff_user: User) -> None:
    api_key, key = issue_api_key(name="ci", owner=staff_user, permissions=["api:read"])
    answer = staff_api.send("post", f"{KEYS}{api_key.pk}/revoke/").json()
    assert answer["revoked_at"] is not None and answer["enabled"] is False
    problem = assert_problem(Client().get(KEYS, headers={"X-API-Key": key}), 401, "invalid_credentials")
    assert problem["detail"] == REVOKED_KEY
    # Revoking again keeps the first revocation's time; rotating cannot bring it back.
    assert staff_api.send("post", f"{KEYS}{api_key.pk}/revoke/").json()["revoked_at"] == answer["revoked_at"]
    problem = assert_problem(staff_api.send("post", f"{KEYS}{api_key.pk}/rotate/"), 409, "conflict")
    assert problem["detail"] == REVOKED_KEY_NOT_ROTATED


def test_keys_are_filtered_by_revoked_and_owner(staff_api: ApiClient, staff_user: User, member_user: User) -> None:
    revoked, _ = issue_api_key(name="old", owner=staff_user)
    revoke_api_key(revoked)
    issue_api_key(name="live", owner=staff_user)
    issue_api_key(name="members", owner=member_user)
    assert [k["name"] for k in staff_api.get_json(KEYS, revoked="true")["results"]] == ["old"]
    assert [k["name"] for k in staff_api.get_json(KEYS, revoked="false")["results"]] == ["live", "members"]
    assert [k["name"] for k in staff_api.get_json(KEYS, owner="member")["results"]] == ["members"]


def test_a_key_is_changed_and_deleted(staff_api: ApiClient, staff_user: User) -> None:
    api_key, key = issue_api_key(name="ci", owner=staff_user, permissions=["api:read"])
    answer = staff_api.send("patch", f"{KEYS}{api_key.pk}/", {"per_minute_limit": 5, "permissions": []}).json()
    assert (answer["per_minute_limit"], answer["permissions"]) == (5, [])
    assert_problem(Client().get(KEYS, headers={"X-API-Key": key}), 403, "forbidden")  # api:read is gone
    assert staff_api.send("delete", f"{KEYS}{api_key.pk}/").status_code == 204
    assert not ApiKey.objects.exists()


def test_a_read_only_key_cannot_mint_keys(key_api: Any) -> None:
    reader = key_api(["api:read"])
    assert_problem(reader.send("post", KEYS, {"name": "escalation", "permissions": ["*"]}), 403, "forbidden")
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["test key"]


def test_a_user_who_is_not_staff_cannot_list_keys(member_api: ApiClient) -> None:
    assert_problem(member_api.get(KEYS), 403, "forbidden")
