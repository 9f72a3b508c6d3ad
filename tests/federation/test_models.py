"""Virtual servers as configuration: a service and a route made and kept with them, and the
validation that keeps names and prefixes unambiguous."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from federation.models import ExposureRule, ItemKind, Member, VirtualServer
from federation.snapshot import get_federation_snapshot
from routing.models import PathMatch, Route, SanitizationMode, Service, ServiceKind
from routing.snapshot import get_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def mcp_service() -> Service:
    return Service.objects.create(name="search", kind=ServiceKind.MCP)


def test_saving_a_virtual_server_makes_its_service_and_an_exact_route() -> None:
    server = VirtualServer.objects.create(name="tools")

    assert server.path == "/mcp/v/tools"
    assert server.service is not None and server.route is not None
    assert (server.service.name, server.service.kind) == ("tools", ServiceKind.VIRTUAL)
    route = server.route
    assert (route.name, route.path, route.path_match, route.service_id) == ("tools", "/mcp/v/tools", PathMatch.EXACT, server.service.pk)
    assert (route.allow_anonymous, route.tool_permissions, route.sanitization) == (False, True, SanitizationMode.OFF)


def test_the_route_follows_the_virtual_servers_name_path_and_enabled_flag() -> None:
    server = VirtualServer.objects.create(name="tools")
    server.name, server.path, server.enabled = "kit", "/mcp/kit", False
    server.save()

    route = Route.objects.get(pk=server.route_id)
    assert (route.name, route.path, route.enabled) == ("kit", "/mcp/kit", False)
    assert Service.objects.get(pk=server.service_id).name == "kit"


def test_access_settings_edited_on_the_route_survive_a_save_of_the_virtual_server() -> None:
    server = VirtualServer.objects.create(name="tools")
    assert server.route is not None
    server.route.allow_anonymous = True
    server.route.required_permissions = ["route:tools"]
    server.route.save()

    server.instructions = "Use the tools."
    server.save()

    route = Route.objects.get(pk=server.route_id)
    assert (route.allow_anonymous, route.required_permissions) == (True, ["route:tools"])


def test_the_virtual_service_is_served_by_the_routing_snapshot() -> None:
    server = VirtualServer.objects.create(name="tools")

    route = next(route for route in get_snapshot().routes if route.name == "tools")

    assert route.service.kind == "virtual"
    assert route.service.targets == ()
    assert get_federation_snapshot().by_service_id[route.service.id].name == "tools"
    assert server.service_id == route.service.id


def test_deleting_a_virtual_server_removes_its_route_and_service() -> None:
    server = VirtualServer.objects.create(name="tools")

    server.delete()

    assert not Route.objects.filter(name="tools").exists()
    assert not Service.objects.filter(name="tools").exists()


def test_a_disabled_virtual_server_is_not_served() -> None:
    VirtualServer.objects.create(name="tools", enabled=False)

    assert get_federation_snapshot().by_service_id == {}


@pytest.mark.parametrize(
    ("taken", "field"),
    [("service", "name"), ("route", "name"), ("path", "path")],
)
def test_a_name_or_path_already_in_use_is_refused(mcp_service: Service, taken: str, field: str) -> None:
    if taken == "service":
        server = VirtualServer(name="search")
    elif taken == "route":
        Route.objects.create(name="other", path="/x", service=mcp_service)
        server = VirtualServer(name="other")
    else:
        Route.objects.create(name="other", path="/mcp/v/tools", service=mcp_service)
        server = VirtualServer(name="tools")

    with pytest.raises(ValidationError) as refused:
        server.full_clean()

    assert field in refused.value.message_dict


@pytest.mark.parametrize("prefix", ["has_underscore", "Upper", "-dash-first", "x" * 41])
def test_a_prefix_that_could_not_be_split_off_a_name_is_refused(mcp_service: Service, prefix: str) -> None:
    member = Member(virtual_server=VirtualServer.objects.create(name="tools"), service=mcp_service, prefix=prefix)

    with pytest.raises(ValidationError) as refused:
        member.full_clean()

    assert "prefix" in refused.value.message_dict


def test_only_mcp_services_can_be_members() -> None:
    server = VirtualServer.objects.create(name="tools")
    other = VirtualServer.objects.create(name="other")
    assert other.service is not None

    with pytest.raises(ValidationError) as refused:
        Member(virtual_server=server, service=other.service, prefix="other").full_clean()

    assert "service" in refused.value.message_dict


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": ItemKind.PROMPT, "pinned_arguments": {"a": 1}}, "pinned_arguments"),
        ({"kind": ItemKind.TOOL, "pinned_arguments": ["a"]}, "pinned_arguments"),
        ({"kind": ItemKind.RESOURCE, "exposed_name": "readme"}, "exposed_name"),
        ({"kind": ItemKind.TOOL, "exposed_name": "has space"}, "exposed_name"),
    ],
)
def test_rules_that_cannot_apply_are_refused(mcp_service: Service, fields: dict[str, Any], field: str) -> None:
    member = Member.objects.create(virtual_server=VirtualServer.objects.create(name="tools"), service=mcp_service, prefix="s")

    with pytest.raises(ValidationError) as refused:
        ExposureRule(member=member, name="item", **fields).full_clean()

    assert field in refused.value.message_dict


def test_two_items_cannot_be_renamed_alike(mcp_service: Service) -> None:
    server = VirtualServer.objects.create(name="tools")
    first = Member.objects.create(virtual_server=server, service=mcp_service, prefix="a")
    second = Member.objects.create(virtual_server=server, service=Service.objects.create(name="files"), prefix="b")
    ExposureRule.objects.create(member=first, name="lookup", exposed_name="find")

    with pytest.raises(ValidationError) as refused:
        ExposureRule(member=second, name="grep", exposed_name="find").full_clean()

    assert "exposed_name" in refused.value.message_dict
