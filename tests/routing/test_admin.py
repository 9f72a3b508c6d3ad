"""The routing admin: lists with health and circuit badges, inline targets and route policies,
validation messages that say what to fix, write-only credentials, and the route tester."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import escape

from gateway_project.state import get_state_store
from performance.models import TTL_RANGE_MESSAGE, ResponseCachePolicy
from routing.admin import BAD_URL_MESSAGE, WEIGHT_TOO_LOW_MESSAGE
from routing.admin_health import STYLESHEET
from routing.balancing import in_flight_key
from routing.circuit import tripped_key
from routing.models import Route, Service, Target
from routing.target_status import circuit_open_key, down_key, ejected_key
from security.models import RateLimitPolicy
from tests.routing.admin_forms import route_form, service_form

SECRET = "upstream-secret-value-123"


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser("operator", "op@example.com", "correct horse battery")


@pytest.fixture
def admin_client(client: Any, operator: User) -> Any:
    client.force_login(operator)
    return client


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
        ({"url": "ftp://files.example"}, BAD_URL_MESSAGE),
        ({"url": "not a url"}, BAD_URL_MESSAGE),
        ({"url": "10.0.0.1:8080/mcp"}, BAD_URL_MESSAGE),
        ({"url": "http://10.0.0.1", "weight": "0"}, WEIGHT_TOO_LOW_MESSAGE),
        ({"url": "http://10.0.0.1", "upstream_auth_value": "x"}, "Name the header that carries the credential."),
    ],
)
def test_bad_target_gets_a_clear_error(admin_client: Any, target: dict[str, Any], message: str) -> None:
    response = admin_client.post("/admin/routing/service/add/", service_form("bad", [target]))
    assert response.status_code == 200
    assert escape(message) in response.content.decode()
    assert not Service.objects.filter(name="bad").exists()


def test_bad_target_url_on_its_own_page_gets_one_clear_error(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://10.0.0.1:8080")
    form = {"service": route.service.pk, "url": "ftp://10.0.0.1", "weight": "1", "enabled": "on", "upstream_auth_header": ""}
    response = admin_client.post("/admin/routing/target/add/", form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"] == [BAD_URL_MESSAGE]
    assert route.service.targets.count() == 1


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


TESTER_BADGE = re.compile(r'<span class="routing-badge routing-badge-(\w+)">([^<]+)</span>')


def test_route_tester_shows_which_targets_take_traffic_as_badges(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", ["http://10.0.0.1:80", "http://10.0.0.2:80"], name="api")
    _serving, tripped = route.service.targets.order_by("id")
    get_state_store().set(circuit_open_key(tripped.id), "1")
    get_state_store().set(tripped_key(tripped.id), "trip")
    html = admin_client.post("/admin/routing/route/tester/", {"method": "GET", "path": "/api/x", "headers": "", "body": ""}).content.decode()
    assert "Matched route <strong>api</strong>" in html
    assert TESTER_BADGE.findall(html) == [("ok", "yes"), ("ok", "closed"), ("bad", "no: down, ejected or open"), ("bad", "open")]
    assert static(STYLESHEET) in html


def test_route_tester_still_answers_when_the_state_store_is_down(
    admin_client: Any, make_route: Any, state_store_down: None
) -> None:
    make_route("/api", "http://10.0.0.1:80", name="api")
    response = admin_client.post("/admin/routing/route/tester/", {"method": "GET", "path": "/api/x", "headers": "", "body": ""})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Matched route <strong>api</strong>" in html
    assert TESTER_BADGE.findall(html) == [("off", "unknown: the state store cannot be reached"), ("off", "unknown")]


def test_route_tester_is_linked_from_the_route_list_and_needs_staff(client: Any, admin_client: Any) -> None:
    assert "/admin/routing/route/tester/" in admin_client.get("/admin/routing/route/").content.decode()
    admin_client.logout()
    assert client.get("/admin/routing/route/tester/").status_code == 302  # to the login page


BADGE = re.compile(r'<span class="routing-badge routing-badge-(\w+)" title="[^"]*">([^<]+)</span>')


def list_row(html: str, text: str) -> str:
    """The one table row that shows ``text``."""
    [row] = [row for row in html.split("<tr")[1:] if text in row]
    return row


def row_badges(html: str, text: str) -> list[tuple[str, str]]:
    """The (tone, label) badges in the row that shows ``text``."""
    return BADGE.findall(list_row(html, text))


def stylesheet_rules() -> str:
    found = finders.find(STYLESHEET)
    assert found, f"{STYLESHEET} is not a static file"
    return Path(str(found)).read_text()


def test_target_list_shows_health_and_circuit_as_coloured_badges(admin_client: Any, make_route: Any) -> None:
    urls = [f"http://10.0.0.{n}:80" for n in range(1, 7)]
    route = make_route("/api", urls)
    serving, down, ejected, open_circuit, half_open, disabled = route.service.targets.order_by("id")
    store = get_state_store()
    store.set(down_key(down.id), "1")
    store.set(ejected_key(ejected.id), "1")
    store.set(circuit_open_key(open_circuit.id), "1")
    store.set(tripped_key(open_circuit.id), "trip")
    store.set(tripped_key(half_open.id), "trip")  # tripped, open flag expired: half-open
    store.set(in_flight_key(serving.id), "3")
    Target.objects.filter(pk=disabled.pk).update(enabled=False)
    response = admin_client.get("/admin/routing/target/")
    assert response.status_code == 200
    html = response.content.decode()
    assert row_badges(html, serving.url) == [("ok", "healthy"), ("ok", "closed")]
    assert '<td class="field-connections_now">3</td>' in list_row(html, serving.url)
    assert '<td class="field-connections_now">0</td>' in list_row(html, down.url)
    assert row_badges(html, down.url) == [("bad", "unhealthy"), ("ok", "closed")]
    assert row_badges(html, ejected.url) == [("warn", "ejected"), ("ok", "closed")]
    assert row_badges(html, open_circuit.url) == [("ok", "healthy"), ("bad", "open")]
    assert row_badges(html, half_open.url) == [("ok", "healthy"), ("warn", "half-open")]
    assert row_badges(html, disabled.url) == [("off", "disabled"), ("ok", "closed")]
    assert static(STYLESHEET) in html
    rules = stylesheet_rules()
    assert all(f".routing-badge-{tone} " in rules for tone in ("ok", "warn", "bad", "off"))


def test_target_list_shows_last_check_and_response_time(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", ["http://10.0.0.1:80", "http://10.0.0.2:80"])
    checked, never = route.service.targets.order_by("id")
    Target.objects.filter(pk=checked.pk).update(response_time_ms=12.34, last_health_check=timezone.now())
    html = admin_client.get("/admin/routing/target/").content.decode()
    checked_row, never_row = list_row(html, checked.url), list_row(html, never.url)
    assert '<td class="field-response_time">12.3 ms</td>' in checked_row
    assert '<td class="field-last_health_check nowrap">-</td>' not in checked_row
    assert '<td class="field-response_time">-</td>' in never_row
    assert '<td class="field-last_health_check nowrap">-</td>' in never_row


def test_target_list_falls_back_to_the_last_check_when_the_state_store_is_down(
    admin_client: Any, make_route: Any, state_store_down: None
) -> None:
    route = make_route("/api", ["http://10.0.0.1:80", "http://10.0.0.2:80"])
    good, bad = route.service.targets.order_by("id")
    Target.objects.filter(pk=bad.pk).update(healthy=False)
    response = admin_client.get("/admin/routing/target/")
    assert response.status_code == 200
    html = response.content.decode()
    assert row_badges(html, good.url) == [("ok", "healthy"), ("off", "unknown")]
    assert row_badges(html, bad.url) == [("bad", "unhealthy"), ("off", "unknown")]


def test_service_list_counts_healthy_enabled_targets_as_a_badge(admin_client: Any, make_route: Any) -> None:
    all_good = make_route("/a", ["http://10.0.0.1:80", "http://10.0.0.2:80"], name="all-good").service
    some = make_route("/b", ["http://10.0.0.3:80", "http://10.0.0.4:80", "http://10.0.0.5:80"], name="some").service
    none = make_route("/c", "http://10.0.0.6:80", name="none-left").service
    empty = make_route("/d", "http://10.0.0.7:80", name="empty").service
    Target.objects.filter(url="http://10.0.0.4:80").update(healthy=False)
    Target.objects.filter(url="http://10.0.0.5:80").update(enabled=False, healthy=False)  # disabled: not counted
    Target.objects.filter(service=none).update(healthy=False)
    Target.objects.filter(service=empty).update(enabled=False)
    html = admin_client.get("/admin/routing/service/").content.decode()
    assert row_badges(html, f">{all_good.name}<") == [("ok", "2/2 healthy")]
    assert row_badges(html, f">{some.name}<") == [("warn", "1/2 healthy")]
    assert row_badges(html, f">{none.name}<") == [("bad", "0/1 healthy")]
    assert row_badges(html, f">{empty.name}<") == [("bad", "no enabled targets")]


def test_a_services_page_shows_its_targets_health_inline(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", ["http://10.0.0.1:80", "http://10.0.0.2:80"])
    _first, ejected = route.service.targets.order_by("id")
    get_state_store().set(ejected_key(ejected.id), "1")
    html = admin_client.get(f"/admin/routing/service/{route.service.pk}/change/").content.decode()
    assert BADGE.findall(html) == [("ok", "healthy"), ("ok", "closed"), ("warn", "ejected"), ("ok", "closed")]
    assert static(STYLESHEET) in html


# --- the route page's inlines: cache policy and rate-limit policies --------------------------------


def test_a_route_is_saved_with_its_cache_policy_and_rate_limit_policies(admin_client: Any) -> None:
    service = Service.objects.create(name="orders", kind="http")
    per_ip = RateLimitPolicy.objects.create(name="per-ip", limit=10, window_seconds=60)
    per_route = RateLimitPolicy.objects.create(name="per-route", scope="route", limit=100, window_seconds=1)
    cache = {"enabled": "on", "ttl_seconds": "600", "cacheable_tools": "[]"}
    response = admin_client.post("/admin/routing/route/add/", route_form(service, cache=cache, policy_ids=(per_ip.pk, per_route.pk)))
    assert response.status_code == 302, response.content.decode()[:3000]
    route = Route.objects.get(name="orders")
    assert ResponseCachePolicy.objects.get(route=route).ttl_seconds == 600
    assert sorted(route.rate_limit_policies.values_list("name", flat=True)) == ["per-ip", "per-route"]
    page = admin_client.get(f"/admin/routing/route/{route.pk}/change/").content.decode()
    assert "10 requests per 60 s, per client ip address" in page
    assert "route-rate-limits" in page  # the class the stylesheet uses to hide the link rows' names
    assert ".route-rate-limits td.original p" in stylesheet_rules()


def test_a_cache_ttl_out_of_range_on_the_route_page_says_the_range(admin_client: Any) -> None:
    service = Service.objects.create(name="orders", kind="http")
    cache = {"enabled": "on", "ttl_seconds": "299", "cacheable_tools": "[]"}
    response = admin_client.post("/admin/routing/route/add/", route_form(service, cache=cache))
    assert response.status_code == 200
    assert escape(TTL_RANGE_MESSAGE) in response.content.decode()
    assert not Route.objects.exists() and not ResponseCachePolicy.objects.exists()


def test_the_route_page_names_the_policies_that_apply_to_every_route(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://10.0.0.1:80")
    RateLimitPolicy.objects.create(name="everyone", limit=10, window_seconds=60)
    RateLimitPolicy.objects.create(name="off-for-now", limit=10, window_seconds=60, enabled=False)
    elsewhere = RateLimitPolicy.objects.create(name="elsewhere", limit=10, window_seconds=60)
    elsewhere.routes.add(make_route("/other", "http://10.0.0.2:80"))
    page = admin_client.get(f"/admin/routing/route/{route.pk}/change/").content.decode()
    [shown] = re.findall(r'<div class="readonly">([^<]*)</div>', page)
    assert shown == "everyone"
