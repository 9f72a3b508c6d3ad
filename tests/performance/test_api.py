"""The performance REST API: response-cache policies (validated as in the admin, effective at
once), purging a route's answers, and the cache's statistics."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from performance.cache import HIT, MISS, X_CACHE_HEADER
from performance.models import CACHEABLE_TOOLS_MESSAGE, TTL_RANGE_MESSAGE, ResponseCachePolicy
from tests.api_client import API, ApiClient
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

POLICIES = f"{API}/cache-policies/"
STATS = f"{API}/cache-stats/"


@pytest.fixture(autouse=True)
def no_default_ip_limit() -> Any:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


@pytest.fixture
def catalog(make_route: Any, upstream: Any) -> Any:
    return make_route("/catalog", upstream.url, name="catalog")


def test_a_policy_created_through_the_api_caches_at_once(staff_api: ApiClient, catalog: Any, upstream: Any) -> None:
    response = staff_api.send("post", POLICIES, {"route": "catalog", "ttl_seconds": 600})
    assert response.status_code == 201, response.content
    assert response.json()["route"] == "catalog"
    proxied = Client()
    assert proxied.get("/catalog/items")[X_CACHE_HEADER] == MISS
    assert proxied.get("/catalog/items")[X_CACHE_HEADER] == HIT
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("ttl", [299, 3601])
def test_a_ttl_outside_five_minutes_to_an_hour_is_refused(staff_api: ApiClient, catalog: Any, ttl: int) -> None:
    problem = assert_problem(staff_api.send("post", POLICIES, {"route": "catalog", "ttl_seconds": ttl}), 400, "validation_failed")
    assert problem["errors"] == {"ttl_seconds": [TTL_RANGE_MESSAGE]}
    assert not ResponseCachePolicy.objects.exists()


def test_cacheable_tools_must_be_a_list_of_names(staff_api: ApiClient, catalog: Any) -> None:
    body = {"route": "catalog", "cacheable_tools": ["search", ""]}
    problem = assert_problem(staff_api.send("post", POLICIES, body), 400, "validation_failed")
    assert problem["errors"] == {"cacheable_tools": [CACHEABLE_TOOLS_MESSAGE]}


def test_a_route_has_one_policy_at_most(staff_api: ApiClient, catalog: Any) -> None:
    ResponseCachePolicy.objects.create(route=catalog)
    problem = assert_problem(staff_api.send("post", POLICIES, {"route": "catalog"}), 400, "validation_failed")
    assert problem["errors"] == {"route": ["Response cache policy with this Route already exists."]}


def test_a_ttl_change_is_validated_too(staff_api: ApiClient, catalog: Any) -> None:
    policy = ResponseCachePolicy.objects.create(route=catalog)
    assert_problem(staff_api.send("patch", f"{POLICIES}{policy.pk}/", {"ttl_seconds": 10}), 400, "validation_failed")
    assert staff_api.send("patch", f"{POLICIES}{policy.pk}/", {"ttl_seconds": 900}).json()["ttl_seconds"] == 900
    policy.refresh_from_db()
    assert policy.ttl_seconds == 900


def test_policies_are_filtered_by_route_name(staff_api: ApiClient, make_route: Any, catalog: Any) -> None:
    other = make_route("/other", "http://10.0.0.1", name="other")
    ResponseCachePolicy.objects.create(route=catalog)
    ResponseCachePolicy.objects.create(route=other, enabled=False)
    assert [p["route"] for p in staff_api.get_json(POLICIES, route="other")["results"]] == ["other"]
    assert [p["route"] for p in staff_api.get_json(POLICIES, enabled="true")["results"]] == ["catalog"]


def test_purge_drops_the_routes_answers_and_statistics_count_them(staff_api: ApiClient, catalog: Any, upstream: Any) -> None:
    policy = ResponseCachePolicy.objects.create(route=catalog)
    proxied = Client()
    proxied.get("/catalog/items")
    proxied.get("/catalog/items")
    stats = staff_api.get_json(STATS)
    assert (stats["hits"], stats["misses"], stats["size"], stats["hit_rate"]) == (1, 1, 1, 0.5)
    assert staff_api.send("post", f"{POLICIES}{policy.pk}/purge/").json() == {"purged": 1}
    assert staff_api.get_json(STATS)["size"] == 0
    assert proxied.get("/catalog/items")[X_CACHE_HEADER] == MISS
    assert len(upstream.requests) == 2


def test_a_read_only_key_reads_statistics_but_cannot_purge(key_api: Any, catalog: Any) -> None:
    policy = ResponseCachePolicy.objects.create(route=catalog)
    reader = key_api(["api:read"])
    assert reader.get(STATS).status_code == 200
    assert_problem(reader.send("post", f"{POLICIES}{policy.pk}/purge/"), 403, "forbidden")


def test_statistics_need_the_state_store(key_api: Any, state_store_down: None) -> None:
    problem = assert_problem(key_api(["api:read"]).get(STATS), 503, "state_store_unavailable")
    assert problem["detail"].startswith("The state store")
