"""The routing admin: lists, inline targets, validation messages, write-only credentials."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from routing.models import Route, Service, Target

SECRET = "upstream-secret-value-123"


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser("operator", "op@example.com", "correct horse battery")


@pytest.fixture
def admin_client(client: Any, operator: User) -> Any:
    client.force_login(operator)
    return client


def service_form(name: str, targets: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "kind": "mcp",
        "lb_policy": "round_robin",
        "connect_timeout": "5",
        "request_timeout": "30",
        "response_timeout": "60",
        "max_retries": "2",
        "retry_backoff_ms": "100",
        "circuit_failure_threshold": "5",
        "circuit_recovery_seconds": "30",
        "retry_backoff_max_ms": "2000",
        "retry_budget_percent": "20",
        "circuit_window_seconds": "30",
        "circuit_half_open_probes": "1",
        "health_check_path": "",
        "health_check_interval": "10",
        "health_check_timeout": "5",
        "healthy_threshold": "2",
        "unhealthy_threshold": "3",
        "passive_failure_threshold": "3",
        "passive_ejection_seconds": "30",
        "targets-TOTAL_FORMS": str(len(targets)),
        "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "1000",
    }
    for index, target in enumerate(targets):
        for field, value in {"url": "", "weight": "1", "enabled": "on", "upstream_auth_header": "", "upstream_auth_value": "", **target}.items():
            data[f"targets-{index}-{field}"] = value
    data.update(overrides)
    return data


@pytest.mark.parametrize("page", ["routing_service", "routing_target", "routing_route"])
def test_changelists_load_with_search_and_filters(admin_client: Any, make_route: Any, page: str) -> None:
    make_route("/mcp/demo", "http://127.0.0.1:9100/mcp", name="demo", kind="mcp")
    assert admin_client.get(f"/admin/routing/{page.split('_')[1]}/").status_code == 200
    assert admin_client.get(f"/admin/routing/{page.split('_')[1]}/?q=demo").status_code == 200


def test_route_changelist_shows_columns(admin_client: Any, make_route: Any) -> None:
    make_route("/mcp/demo", "http://127.0.0.1:9100/mcp", name="demo", kind="mcp", methods=["POST", "GET"])
    html = admin_client.get("/admin/routing/route/").content.decode()
    assert "/mcp/demo" in html and "POST, GET" in html


def test_service_with_inline_targets_is_created(admin_client: Any) -> None:
    data = service_form("billing", [{"url": "http://10.0.0.1:8080/mcp"}, {"url": "http://10.0.0.2:8080/mcp", "weight": "3"}])
    response = admin_client.post("/admin/routing/service/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    service = Service.objects.get(name="billing")
    assert sorted(service.targets.values_list("weight", flat=True)) == [1, 3]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"url": "ftp://files.example"}, "Enter a valid URL."),
        ({"url": "not a url"}, "Enter a valid URL."),
        ({"url": "http://10.0.0.1", "weight": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"url": "http://10.0.0.1", "upstream_auth_value": "x"}, "Name the header that carries the credential."),
    ],
)
def test_bad_target_gets_a_clear_error(admin_client: Any, target: dict[str, Any], message: str) -> None:
    response = admin_client.post("/admin/routing/service/add/", service_form("bad", [target]))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Service.objects.filter(name="bad").exists()


def test_target_credential_is_never_shown_and_kept_when_left_blank(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://10.0.0.1:8080")
    target = route.service.targets.get()
    target.upstream_auth_header = "X-Token"
    target.upstream_auth_value = SECRET
    target.save()
    page = admin_client.get(f"/admin/routing/target/{target.pk}/change/")
    assert page.status_code == 200
    assert SECRET not in page.content.decode()
    response = admin_client.post(
        f"/admin/routing/target/{target.pk}/change/",
        {"service": route.service.pk, "url": "http://10.0.0.1:8080", "weight": "2", "enabled": "on", "upstream_auth_header": "X-Token", "upstream_auth_value": ""},
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.weight == 2
    assert target.upstream_auth_value == SECRET


def test_target_credential_can_be_cleared(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://10.0.0.1:8080")
    target = route.service.targets.get()
    Target.objects.filter(pk=target.pk).update(upstream_auth_header="X-Token", upstream_auth_value=SECRET)
    admin_client.post(
        f"/admin/routing/target/{target.pk}/change/",
        {"service": route.service.pk, "url": "http://10.0.0.1:8080", "weight": "1", "enabled": "on", "upstream_auth_header": "", "clear_upstream_auth": "on"},
    )
    target.refresh_from_db()
    assert target.upstream_auth_value == ""


def route_form(service: Service, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "enabled": "on",
        "service": service.pk,
        "priority": "0",
        "path": "/orders",
        "path_match": "prefix",
        "methods": "[]",
        "header_matchers": "{}",
        "query_matchers": "{}",
        "content_matchers": "{}",
        "path_rewrite": "",
        "idempotent_tools": "[]",
        "injection_detection": "block",
        "cors_allowed_origins": "[]",
        "sanitization": "auto",
        "allow_anonymous": "on",
        "required_permissions": "[]",
        "connect_timeout": "",
        "request_timeout": "",
        "response_timeout": "",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"path": "orders"}, "The path must start with /."),
        ({"methods": '["FETCH"]'}, "Give a list drawn from"),
        ({"header_matchers": '{"X-Tenant": 5}'}, "Bad matcher: X-Tenant: give a string or one of"),
        ({"query_matchers": '{"v": {"regex": "("}}'}, "Bad matcher: v: invalid regular expression"),
        ({"query_matchers": '{"v": {"present": "yes"}}'}, "Bad matcher: v: &#x27;present&#x27; needs true or false"),
        ({"content_matchers": '{"tool": "add"}'}, "Content matchers take method, name, uri."),
        ({"path": "/users/{id", "path_match": "pattern"}, "Bad pattern: braces must enclose a parameter name"),
        ({"idempotent_tools": '"search"'}, "Give a list of tool names"),
        ({"cors_allowed_origins": '["https://app.example/path"]'}, "Give a list of origins like"),
        ({"path_rewrite": "internal"}, "A rewrite must start with /."),
        ({"required_permissions": '["billing"]'}, "use one of route, tool, prompt, resource"),
    ],
)
def test_bad_route_gets_a_clear_error(admin_client: Any, overrides: dict[str, Any], message: str) -> None:
    service = Service.objects.create(name="orders")
    response = admin_client.post("/admin/routing/route/add/", route_form(service, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Route.objects.exists()


def test_route_saved_in_admin_is_served_at_once(admin_client: Any, upstream: Any) -> None:
    service = Service.objects.create(name="orders", kind="http")
    Target.objects.create(service=service, url=upstream.url)
    response = admin_client.post("/admin/routing/route/add/", route_form(service, methods='["get"]'))
    assert response.status_code == 302
    assert Route.objects.get(name="orders").methods == ["GET"]
    assert admin_client.get("/orders/echo").status_code == 200


def test_route_saved_in_admin_requires_a_credential_unless_opened(admin_client: Any, upstream: Any) -> None:
    service = Service.objects.create(name="orders", kind="http")
    Target.objects.create(service=service, url=upstream.url)
    form = route_form(service)
    del form["allow_anonymous"]  # an unticked checkbox is not posted
    assert admin_client.post("/admin/routing/route/add/", form).status_code == 302
    route = Route.objects.get(name="orders")
    assert (route.allow_anonymous, route.tool_permissions) == (False, False)
    assert admin_client.get("/orders/echo").status_code == 401


def test_route_tester_shows_the_winner_and_why_others_were_skipped(admin_client: Any, make_route: Any) -> None:
    make_route("/mcp", "http://10.0.0.9:9000/mcp", name="billing-tools", kind="mcp", priority=5, content_matchers={"name": {"regex": "invoice_.*"}})
    make_route("/mcp", "http://10.0.0.8:9000/mcp", name="all-tools", kind="mcp")
    body = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search"}}'
    response = admin_client.post("/admin/routing/route/tester/", {"method": "POST", "path": "/mcp", "headers": "", "body": body})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Matched route <strong>all-tools</strong>" in html
    assert "skipped: content name ~ /invoice_.*/ not satisfied" in html
    assert "http://10.0.0.8:9000/mcp" in html


def test_route_tester_explains_a_request_nothing_matches(admin_client: Any, make_route: Any) -> None:
    make_route("/api", "http://10.0.0.9", name="api", methods=["GET"])
    html = admin_client.post("/admin/routing/route/tester/", {"method": "DELETE", "path": "/api/x?y=1", "headers": "X-A: b", "body": ""}).content.decode()
    assert "DELETE is not allowed here" in html
    assert "skipped: method" in html


def test_route_tester_rejects_malformed_headers(admin_client: Any) -> None:
    html = admin_client.post("/admin/routing/route/tester/", {"method": "GET", "path": "/x", "headers": "no colon here", "body": ""}).content.decode()
    assert "Line 1: write headers as" in html


def test_route_tester_is_linked_from_the_route_list_and_needs_staff(client: Any, admin_client: Any) -> None:
    assert "/admin/routing/route/tester/" in admin_client.get("/admin/routing/route/").content.decode()
    admin_client.logout()
    assert client.get("/admin/routing/route/tester/").status_code == 302  # to the login page


def test_target_list_shows_live_traffic_verdicts(admin_client: Any, make_route: Any) -> None:
    from gateway_project.state import get_state_store
    from routing.target_status import circuit_open_key, ejected_key

    route = make_route("/api", ["http://10.0.0.1:1", "http://10.0.0.2:2", "http://10.0.0.3:3"])
    first, second, _third = route.service.targets.order_by("id")
    get_state_store().set(ejected_key(first.id), "1")
    get_state_store().set(circuit_open_key(second.id), "1")
    html = admin_client.get("/admin/routing/target/").content.decode()
    assert "ejected (failing live traffic)" in html
    assert "circuit open" in html
    assert "serving" in html
