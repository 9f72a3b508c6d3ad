"""add_route and seed_demo: one command puts a server behind the gateway."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from routing.models import Route, Service, Target


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_add_route_creates_service_targets_and_route() -> None:
    output = run("add_route", "/mcp/github", "http://10.0.0.1:9000/mcp", "http://10.0.0.2:9000/mcp", "--lb", "least_connections")
    route = Route.objects.get(name="mcp-github")
    assert route.path == "/mcp/github"
    assert route.service.kind == "mcp"
    assert route.service.lb_policy == "least_connections"
    assert sorted(route.service.targets.values_list("url", flat=True)) == ["http://10.0.0.1:9000/mcp", "http://10.0.0.2:9000/mcp"]
    assert "Created route 'mcp-github'" in output and "http://10.0.0.2:9000/mcp (added)" in output


@pytest.mark.django_db
def test_add_route_is_idempotent_by_name_and_adds_new_targets() -> None:
    run("add_route", "/api/orders", "http://10.0.0.1", "--name", "orders", "--kind", "http")
    output = run("add_route", "/api/orders", "http://10.0.0.1", "http://10.0.0.3", "--name", "orders", "--kind", "http")
    assert Route.objects.count() == 1 and Service.objects.count() == 1
    assert Target.objects.count() == 2
    assert "already exists" in output and "http://10.0.0.1 (kept)" in output and "http://10.0.0.3 (added)" in output


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/x", "ftp://files.example"], "Not an http(s) URL: 'ftp://files.example'"),
        (["/x", "not-a-url"], "Not an http(s) URL"),
        (["x", "http://10.0.0.1"], "The path must start with /"),
    ],
)
def test_add_route_refuses_bad_input_and_creates_nothing(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("add_route", *args)
    assert not Route.objects.exists() and not Service.objects.exists()


@pytest.mark.django_db
def test_add_route_refuses_a_taken_path() -> None:
    run("add_route", "/mcp/a", "http://10.0.0.1", "--name", "first")
    with pytest.raises(CommandError, match="already routed by 'first'"):
        run("add_route", "/mcp/a", "http://10.0.0.2", "--name", "second")
    assert Route.objects.count() == 1


@pytest.mark.django_db
def test_add_route_refuses_a_name_serving_another_path() -> None:
    run("add_route", "/mcp/a", "http://10.0.0.1", "--name", "first")
    with pytest.raises(CommandError, match="already serves /mcp/a"):
        run("add_route", "/mcp/b", "http://10.0.0.2", "--name", "first")


@pytest.mark.django_db
def test_add_route_refuses_an_unknown_policy() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'fastest'"):
        run("add_route", "/mcp/a", "http://10.0.0.1", "--lb", "fastest")


@pytest.mark.django_db
@override_settings(GATEWAY_DEMO_UPSTREAM="http://127.0.0.1:9555/mcp")
def test_seed_demo_routes_mcp_demo_once() -> None:
    first = run("seed_demo")
    second = run("seed_demo")
    route = Route.objects.get(path="/mcp/demo")
    assert route.service.kind == "mcp"
    assert list(route.service.targets.values_list("url", flat=True)) == ["http://127.0.0.1:9555/mcp"]
    assert "(created)" in first and "(already present)" in second


def test_route_added_with_open_is_proxied_without_a_credential(client: Any, upstream: Any, db: Any) -> None:
    run("add_route", "/orders", upstream.url, "--kind", "http", "--open")
    assert client.get("/orders/echo").status_code == 200


def test_route_added_by_command_requires_a_credential_by_default(client: Any, upstream: Any, db: Any) -> None:
    output = run("add_route", "/orders", upstream.url, "--kind", "http")
    assert "credential required" in output
    assert client.get("/orders/echo").status_code == 401
    assert upstream.requests == []
