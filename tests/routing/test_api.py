"""The routing REST API: services, targets and routes, their validation (the admin's own), their
filters, live effect on the snapshot, the write-only upstream credential, and /health/."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from gateway_project.state import get_state_store
from routing.models import Route, Service, Target
from routing.snapshot import get_snapshot
from routing.target_status import down_key
from tests.api_client import API, ApiClient
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

SERVICES = f"{API}/services/"
TARGETS = f"{API}/targets/"
ROUTES = f"{API}/routes/"
HEALTH = f"{API}/health/"
SECRET = "upstream-secret-value"


@pytest.fixture
def orders(db: Any) -> Service:
    return Service.objects.create(name="orders", kind="http")


def route_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "orders", "service": "orders", "path": "/orders", **overrides}


# --- services --------------------------------------------------------------------------------------


def test_a_service_is_created_read_changed_and_deleted(staff_api: ApiClient) -> None:
    created = staff_api.send("post", SERVICES, {"name": "search", "kind": "mcp", "lb_policy": "least_connections"})
    assert created.status_code == 201, created.content
    url = f"{SERVICES}{created.json()['id']}/"
    assert staff_api.get_json(url)["lb_policy"] == "least_connections"
    assert staff_api.send("patch", url, {"max_retries": 4}).json()["max_retries"] == 4
    assert Service.objects.get(name="search").max_retries == 4
    assert staff_api.send("delete", url).status_code == 204
    assert not Service.objects.exists()


def test_a_service_that_routes_use_cannot_be_deleted(staff_api: ApiClient, orders: Service) -> None:
    Route.objects.create(name="orders", path="/orders", service=orders)
    body = assert_problem(staff_api.send("delete", f"{SERVICES}{orders.pk}/"), 409, "conflict")
    assert "orders" in body["detail"]
    assert Service.objects.filter(pk=orders.pk).exists()


def test_a_service_timeout_below_the_minimum_is_refused(staff_api: ApiClient) -> None:
    body = assert_problem(staff_api.send("post", SERVICES, {"name": "slow", "connect_timeout": 0.01}), 400, "validation_failed")
    assert body["errors"] == {"connect_timeout": ["Ensure this value is greater than or equal to 0.1."]}


def test_services_are_filtered_by_kind(staff_api: ApiClient) -> None:
    Service.objects.create(name="a", kind="mcp")
    Service.objects.create(name="b", kind="http")
    assert [s["name"] for s in staff_api.get_json(SERVICES, kind="http")["results"]] == ["b"]


# --- targets ---------------------------------------------------------------------------------------


def test_a_target_is_added_to_a_service_by_name(staff_api: ApiClient, orders: Service) -> None:
    response = staff_api.send("post", TARGETS, {"service": "orders", "url": "http://10.0.0.5:8080", "weight": 3})
    assert response.status_code == 201, response.content
    assert response.json()["service"] == "orders"
    assert orders.targets.get().weight == 3


@pytest.mark.parametrize(
    ("target", "field", "message"),
    [
        ({"url": "ftp://files.example"}, "url", "Enter a valid URL."),
        ({"url": "not a url"}, "url", "Enter a valid URL."),
        ({"url": "http://10.0.0.1", "weight": 0}, "weight", "Ensure this value is greater than or equal to 1."),
        ({"url": "http://10.0.0.1", "upstream_auth_value": "x"}, "upstream_auth_header", "Name the header that carries the credential."),
        ({"url": "http://10.0.0.1", "service": "nope"}, "service", "Object with name=nope does not exist."),
    ],
)
def test_a_bad_target_is_refused_with_the_admins_message(
    staff_api: ApiClient, orders: Service, target: dict[str, Any], field: str, message: str
) -> None:
    body = assert_problem(staff_api.send("post", TARGETS, {"service": "orders", **target}), 400, "validation_failed")
    assert body["errors"][field] == [message]
    assert not Target.objects.exists()


def test_the_same_url_twice_in_one_service_is_refused(staff_api: ApiClient, orders: Service) -> None:
    Target.objects.create(service=orders, url="http://10.0.0.5")
    response = staff_api.send("post", TARGETS, {"service": "orders", "url": "http://10.0.0.5"})
    body = assert_problem(response, 400, "validation_failed")
    assert body["errors"]["non_field_errors"] == ["The fields service, url must make a unique set."]


def test_the_upstream_credential_is_write_only_and_kept_unless_sent(staff_api: ApiClient, orders: Service) -> None:
    created = staff_api.send(
        "post", TARGETS, {"service": "orders", "url": "http://10.0.0.5", "upstream_auth_header": "X-Token", "upstream_auth_value": SECRET}
    )
    assert created.status_code == 201, created.content
    assert SECRET not in created.content.decode()
    assert created.json()["upstream_auth_value_set"] is True
    url = f"{TARGETS}{created.json()['id']}/"
    assert SECRET not in staff_api.get(url).content.decode()
    assert staff_api.send("patch", url, {"weight": 2}).status_code == 200
    assert Target.objects.get().upstream_auth_value == SECRET
    cleared = staff_api.send("patch", url, {"upstream_auth_value": ""}).json()
    assert cleared["upstream_auth_value_set"] is False
    assert Target.objects.get().upstream_auth_value == ""


def test_health_state_is_read_only(staff_api: ApiClient, orders: Service) -> None:
    target = Target.objects.create(service=orders, url="http://10.0.0.5")
    answer = staff_api.send("patch", f"{TARGETS}{target.pk}/", {"healthy": False, "active_connections": 99}).json()
    assert (answer["healthy"], answer["active_connections"]) == (True, 0)
    target.refresh_from_db()
    assert target.healthy is True


def test_targets_are_filtered_by_service_name_and_enabled(staff_api: ApiClient, orders: Service) -> None:
    other = Service.objects.create(name="search")
    Target.objects.create(service=orders, url="http://10.0.0.1")
    Target.objects.create(service=orders, url="http://10.0.0.2", enabled=False)
    Target.objects.create(service=other, url="http://10.0.0.3")
    assert [t["url"] for t in staff_api.get_json(TARGETS, service="orders")["results"]] == ["http://10.0.0.1", "http://10.0.0.2"]
    assert [t["url"] for t in staff_api.get_json(TARGETS, service="orders", enabled="false")["results"]] == ["http://10.0.0.2"]


# --- routes ----------------------------------------------------------------------------------------


def test_a_created_route_is_in_the_snapshot_at_once(staff_api: ApiClient, orders: Service) -> None:
    Target.objects.create(service=orders, url="http://10.0.0.5")
    assert get_snapshot().routes == ()
    response = staff_api.send("post", ROUTES, route_body(methods=["get", "post"]))
    assert response.status_code == 201, response.content
    assert response.json()["methods"] == ["GET", "POST"]  # clean() upper-cases, as in the admin
    (route,) = get_snapshot().routes
    assert (route.name, route.path, route.methods) == ("orders", "/orders", frozenset({"GET", "POST"}))


def test_a_changed_and_a_deleted_route_reach_the_snapshot_at_once(staff_api: ApiClient, orders: Service) -> None:
    route = Route.objects.create(name="orders", path="/orders", service=orders)
    assert get_snapshot().routes[0].priority == 0
    staff_api.send("patch", f"{ROUTES}{route.pk}/", {"priority": 7})
    assert get_snapshot().routes[0].priority == 7
    staff_api.send("delete", f"{ROUTES}{route.pk}/")
    assert get_snapshot().routes == ()


def test_a_route_saved_through_the_api_serves_traffic(staff_api: ApiClient, orders: Service, upstream: Any) -> None:
    Target.objects.create(service=orders, url=upstream.url)
    assert staff_api.send("post", ROUTES, route_body(allow_anonymous=True)).status_code == 201
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        assert ApiClient().get("/orders/echo").status_code == 200
    assert upstream.requests[-1]["path"] == "/echo"  # a prefix route strips its path


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"path": "orders"}, "path", "The path must start with /."),
        ({"methods": ["FETCH"]}, "methods", "Give a list drawn from"),
        ({"header_matchers": {"X-Tenant": 5}}, "header_matchers", "Bad matcher: X-Tenant: give a string or one of"),
        ({"query_matchers": {"v": {"regex": "("}}}, "query_matchers", "Bad matcher: v: invalid regular expression"),
        ({"content_matchers": {"tool": "add"}}, "content_matchers", "Content matchers take method, name, uri."),
        ({"path": "/users/{id", "path_match": "pattern"}, "path", "Bad pattern: braces must enclose a parameter name"),
        ({"cors_allowed_origins": ["https://app.example/path"]}, "cors_allowed_origins", "Give a list of origins like"),
        ({"path_rewrite": "internal"}, "path_rewrite", "A rewrite must start with /."),
        ({"required_permissions": ["billing"]}, "required_permissions", "use one of route, tool, prompt, resource, api"),
        ({"service": "missing"}, "service", "Object with name=missing does not exist."),
        ({"connect_timeout": 0}, "connect_timeout", "Ensure this value is greater than or equal to 0.1."),
    ],
)
def test_a_bad_route_is_refused_with_the_admins_message(
    staff_api: ApiClient, orders: Service, overrides: dict[str, Any], field: str, message: str
) -> None:
    body = assert_problem(staff_api.send("post", ROUTES, route_body(**overrides)), 400, "validation_failed")
    assert message in " ".join(body["errors"][field])
    assert not Route.objects.exists()


@pytest.mark.parametrize("field", ["idempotent_tools", "required_permissions", "cors_allowed_origins"])
def test_a_json_field_holding_a_nul_character_is_refused(staff_api: ApiClient, orders: Service, field: str) -> None:
    body = '{"name": "orders", "service": "orders", "path": "/orders", "%s": ["a\\u0000"]}' % field
    assert_problem(staff_api.generic("POST", ROUTES, body, content_type="application/json"), 400, "malformed_body")
    assert not Route.objects.exists()


def test_a_partial_update_is_validated_with_the_rest_of_the_route(staff_api: ApiClient, orders: Service) -> None:
    route = Route.objects.create(name="orders", path="/users/{id}", path_match="pattern", service=orders)
    body = assert_problem(staff_api.send("patch", f"{ROUTES}{route.pk}/", {"path": "/users/{id"}), 400, "validation_failed")
    assert "Bad pattern" in body["errors"]["path"][0]
    route.refresh_from_db()
    assert route.path == "/users/{id}"


def test_routes_are_filtered_by_enabled_and_service(staff_api: ApiClient, orders: Service) -> None:
    search = Service.objects.create(name="search")
    Route.objects.create(name="a", path="/a", service=orders)
    Route.objects.create(name="b", path="/b", service=orders, enabled=False)
    Route.objects.create(name="c", path="/c", service=search)
    assert [r["name"] for r in staff_api.get_json(ROUTES, enabled="true")["results"]] == ["a", "c"]
    assert [r["name"] for r in staff_api.get_json(ROUTES, service="orders")["results"]] == ["a", "b"]
    body = assert_problem(staff_api.get(ROUTES, {"path_match": "fuzzy"}), 400, "validation_failed")
    assert body["errors"] == {"path_match": ["Select a valid choice. fuzzy is not one of the available choices."]}


def test_an_api_key_with_api_read_cannot_change_a_route(key_api: Any, orders: Service) -> None:
    route = Route.objects.create(name="orders", path="/orders", service=orders)
    reader = key_api(["api:read"])
    assert reader.get_json(f"{ROUTES}{route.pk}/")["path"] == "/orders"
    assert_problem(reader.send("patch", f"{ROUTES}{route.pk}/", {"path": "/other"}), 403, "forbidden")
    assert_problem(reader.send("delete", f"{ROUTES}{route.pk}/"), 403, "forbidden")
    assert Route.objects.get().path == "/orders"


# --- health ----------------------------------------------------------------------------------------


def test_health_shows_readiness_and_each_targets_live_status(staff_api: ApiClient, orders: Service) -> None:
    up = Target.objects.create(service=orders, url="http://10.0.0.1")
    down = Target.objects.create(service=orders, url="http://10.0.0.2")
    get_state_store().set(down_key(down.pk), "1", ttl=60)
    health = staff_api.get_json(HEALTH)
    assert health["status"] == "ready"
    assert health["checks"] == {"database": "ok", "state_store": "ok"}
    live = {target["id"]: target["live"] for target in health["targets"]}
    assert live[up.pk]["summary"] == "serving"
    assert live[down.pk]["down"] is True
    assert live[down.pk]["summary"] == "down (failed active checks)"


def test_health_names_a_failing_state_store(key_api: Any, orders: Service, state_store_down: None) -> None:
    Target.objects.create(service=orders, url="http://10.0.0.1")
    # An API key: a JWT's session lives in the state store, so JWT requests would get 503.
    health = key_api(["api:read"]).get_json(HEALTH)
    assert health["status"] == "unavailable"
    assert health["failing"] == ["state_store"]
    assert health["targets"][0]["live"] is None
