"""Overlapping routes: which path specs and method lists overlap, and the admin's warning when a
saved route overlaps an enabled route of the same priority (saved all the same)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils.html import escape

from routing.matching import path_matches
from routing.models import Route, Service
from routing.overlaps import OVERLAP_WARNING, methods_overlap, overlap_warnings, paths_overlap
from routing.snapshot import RouteConfig, route_config
from tests.routing.admin_forms import route_form
from tests.routing.factories import make_service

ADD_ROUTE = "/admin/routing/route/add/"


def compiled(path: str, path_match: str) -> RouteConfig:
    return route_config(Route(name="r", path=path, path_match=path_match), make_service())


# Each overlapping pair comes with a path both take, checked against the real matcher, so the
# table cannot claim an overlap that matching would not produce.
@pytest.mark.parametrize(
    ("first", "second", "both_take"),
    [
        (("/api", "prefix"), ("/api", "prefix"), "/api"),
        (("/api", "prefix"), ("/api/orders", "prefix"), "/api/orders/7"),
        (("/api/", "prefix"), ("/api", "exact"), "/api"),
        (("/api", "prefix"), ("/api/", "exact"), "/api/"),
        (("/", "prefix"), ("/anything/at/all", "exact"), "/anything/at/all"),
        (("/api", "prefix"), ("/api/orders/{id}", "pattern"), "/api/orders/7"),
        (("/users/{id}", "pattern"), ("/users/42", "exact"), "/users/42"),
        (("/users/{id}", "pattern"), ("/{kind}/42", "pattern"), "/users/42"),
        (("/files/{rest:path}", "pattern"), ("/files/a/b/c", "exact"), "/files/a/b/c"),
        (("/v{n}/items", "pattern"), ("/v2/items", "exact"), "/v2/items"),
        (("/mcp", "exact"), ("/mcp", "exact"), "/mcp"),
    ],
)
def test_overlapping_paths_are_found(first: tuple[str, str], second: tuple[str, str], both_take: str) -> None:
    assert path_matches(compiled(*first), both_take) and path_matches(compiled(*second), both_take)
    assert paths_overlap(*first, *second)
    assert paths_overlap(*second, *first)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("/api", "prefix"), ("/apis", "prefix")),
        (("/api", "prefix"), ("/other", "exact")),
        (("/api", "exact"), ("/api/", "exact")),
        (("/api", "exact"), ("/api/orders", "prefix")),
        (("/users/{id}", "pattern"), ("/orders/7", "exact")),
        (("/users/{id}", "pattern"), ("/users/7/orders", "exact")),
        (("/users/{id}", "pattern"), ("/users/", "exact")),
        (("/files/{rest:path}", "pattern"), ("/files", "exact")),
        (("/v{n}/items", "pattern"), ("/beta/items", "exact")),
    ],
)
def test_disjoint_paths_are_not_reported(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert not paths_overlap(*first, *second)
    assert not paths_overlap(*second, *first)


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ([], [], "any method"),
        ([], ["POST", "GET"], "GET, POST"),
        (["GET", "POST"], ["POST", "DELETE"], "POST"),
        (["GET"], ["POST"], None),
    ],
)
def test_methods_overlap_where_both_lists_take_a_method(first: list[str], second: list[str], shared: str | None) -> None:
    assert methods_overlap(first, second) == shared


@pytest.fixture
def orders_service(db: Any) -> Service:
    return Service.objects.create(name="orders", kind="http")


def test_saving_an_overlapping_route_warns_naming_the_other_route_but_saves(
    admin_client: Any, make_route: Any, orders_service: Service
) -> None:
    make_route("/orders/{id}", "http://10.0.0.1:80", name="one-order", path_match="pattern", methods=["GET"])

    response = admin_client.post(ADD_ROUTE, route_form(orders_service, methods='["GET", "POST"]'), follow=True)

    assert response.status_code == 200
    assert Route.objects.filter(name="orders").exists()
    expected = OVERLAP_WARNING.format(
        route="orders", other="one-order", priority=0, methods="GET", first="one-order", reason="an exact path before a pattern before a prefix"
    )
    shown = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert [level for level, _ in shown] == ["warning", "success"]
    assert shown[0] == ("warning", expected)
    assert escape(expected) in response.content.decode()


@pytest.mark.parametrize(
    ("other", "why_not"),
    [
        ({"path": "/orders", "priority": 5}, "another priority"),
        ({"path": "/orders", "methods": ["DELETE"]}, "no method in common"),
        ({"path": "/orders", "enabled": False}, "disabled"),
        ({"path": "/invoices"}, "another path"),
    ],
)
def test_no_warning_for_a_route_that_cannot_compete(
    admin_client: Any, make_route: Any, orders_service: Service, other: dict[str, Any], why_not: str
) -> None:
    make_route(other.pop("path"), "http://10.0.0.1:80", name="other", **other)

    response = admin_client.post(ADD_ROUTE, route_form(orders_service, methods='["GET"]'), follow=True)

    assert Route.objects.filter(name="orders").exists()
    assert [m.level_tag for m in response.context["messages"]] == ["success"], why_not


def test_the_warning_says_which_route_is_tried_first_and_why(make_route: Any) -> None:
    short = make_route("/api", "http://10.0.0.1:80", name="short")
    long = make_route("/api/orders", "http://10.0.0.1:80", name="long")
    with_matcher = make_route("/api/orders", "http://10.0.0.1:80", name="b-with-matcher", header_matchers={"X-Tenant": "a"})

    # In the route list's order: b-with-matcher, then long.
    about_matcher, about_long = overlap_warnings(short)
    assert '"b-with-matcher" is tried first (the longer path)' in about_matcher
    assert '"long" is tried first (the longer path)' in about_long
    [about_matcher_from_long, _about_short] = overlap_warnings(long)
    assert '"b-with-matcher" is tried first (more header, query or content matchers)' in about_matcher_from_long
    Route.objects.filter(pk=with_matcher.pk).update(priority=1)
    assert overlap_warnings(Route.objects.get(pk=long.pk)) == [
        OVERLAP_WARNING.format(route="long", other="short", priority=0, methods="any method", first="long", reason="the longer path")
    ]


def test_enabling_a_route_that_overlaps_warns_too(admin_client: Any, make_route: Any) -> None:
    make_route("/api", "http://10.0.0.1:80", name="live")
    dormant = make_route("/api/v2", "http://10.0.0.1:80", name="dormant", enabled=False)

    response = admin_client.post(
        "/admin/routing/route/", {"action": "enable_routes", "_selected_action": [dormant.pk]}, follow=True
    )

    levels = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert levels[0][0] == "success"
    assert levels[1][0] == "warning" and '"live"' in levels[1][1]
