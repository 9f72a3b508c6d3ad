"""The routing admin's actions, against real upstreams and the real snapshot: enable and disable
routes and targets, run a health check now, purge a route's cached answers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from gateway_project.state import get_state_store
from performance.admin import PURGED_MESSAGE
from performance.cache import HIT, MISS, X_CACHE_HEADER
from performance.models import ResponseCachePolicy
from routing.admin import DISABLED_MESSAGE, ENABLED_MESSAGE, NOTHING_CHANGED_MESSAGE
from routing.admin_health import CHECK_NOT_RECORDED_MESSAGE, CHECK_SKIPPED_MESSAGE
from routing.models import ConfigRevision, Service, Target
from routing.snapshot import get_snapshot
from routing.target_status import down_key, unavailable_target_ids
from tests.live_servers import free_port
from tests.upstream_server import UpstreamServer

ROUTES = "/admin/routing/route/"
TARGETS = "/admin/routing/target/"
SERVICES = "/admin/routing/service/"
BADGE = re.compile(r'<span class="routing-badge routing-badge-(\w+)" title="[^"]*">([^<]+)</span>')


def run_action(admin_client: Any, changelist: str, action: str, *rows: Any) -> list[str]:
    """Run an admin action on ``rows``; the messages shown on the page it lands on."""
    response = admin_client.post(changelist, {"action": action, "_selected_action": [row.pk for row in rows]}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def routed_names() -> list[str]:
    return [route.name for route in get_snapshot().routes]


def row_badges(html: str, text: str) -> list[tuple[str, str]]:
    [row] = [row for row in html.split("<tr")[1:] if text in row]
    return BADGE.findall(row)


# --- enable and disable --------------------------------------------------------------------------


def test_disabling_a_route_stops_it_matching_at_once_and_enabling_brings_it_back(
    admin_client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    route = make_route("/api", upstream.url, name="api")
    assert admin_client.get("/api/echo").status_code == 200
    assert routed_names() == ["api"]

    shown = run_action(admin_client, ROUTES, "disable_routes", route)

    assert shown == [DISABLED_MESSAGE.format(count=1, kind="route", names="api")]
    assert routed_names() == []
    assert admin_client.get("/api/echo").status_code == 404
    assert LogEntry.objects.get(object_id=str(route.pk)).get_change_message() == "Disabled"

    assert run_action(admin_client, ROUTES, "enable_routes", route) == [ENABLED_MESSAGE.format(count=1, kind="route", names="api")]
    assert routed_names() == ["api"]
    assert admin_client.get("/api/echo").status_code == 200


def test_disabling_a_target_takes_it_out_of_rotation_at_once(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", ["http://10.0.0.1:80", "http://10.0.0.2:80"])
    kept, dropped = route.service.targets.order_by("id")

    shown = run_action(admin_client, TARGETS, "disable_targets", dropped)

    assert shown == [DISABLED_MESSAGE.format(count=1, kind="target", names=str(dropped))]
    [routed] = get_snapshot().routes
    assert [target.id for target in routed.service.targets] == [kept.pk]
    assert row_badges(admin_client.get(TARGETS).content.decode(), dropped.url)[0] == ("off", "disabled")
    run_action(admin_client, TARGETS, "enable_targets", dropped)
    [routed] = get_snapshot().routes
    assert [target.id for target in routed.service.targets] == [kept.pk, dropped.pk]


def test_disabling_routes_already_disabled_changes_nothing(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://10.0.0.1:80", enabled=False)
    revision = ConfigRevision.objects.get().revision

    shown = run_action(admin_client, ROUTES, "disable_routes", route)

    assert shown == [NOTHING_CHANGED_MESSAGE.format(kind="route", state="disabled")]
    assert ConfigRevision.objects.get().revision == revision
    assert not LogEntry.objects.exists()


# --- run a health check now ----------------------------------------------------------------------


def test_a_health_check_now_probes_the_target_and_updates_its_columns(
    admin_client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    route = make_route("/api", upstream.url)
    Service.objects.filter(pk=route.service.pk).update(health_check_path="/healthz")
    target = route.service.targets.get()
    assert (target.last_health_check, target.response_time_ms) == (None, None)
    before = timezone.now()

    [shown] = run_action(admin_client, TARGETS, "check_health_now", target)

    assert [(r["method"], r["path"]) for r in upstream.requests] == [("GET", "/healthz")]
    target.refresh_from_db()
    assert target.last_health_check is not None and before - timedelta(seconds=1) <= target.last_health_check <= timezone.now()
    assert target.response_time_ms is not None and target.response_time_ms > 0
    assert target.healthy
    assert shown == f"{upstream.url}: answered in {target.response_time_ms:.1f} ms (HTTP 200); still healthy."
    page = admin_client.get(TARGETS).content.decode()
    assert f"{target.response_time_ms:.1f} ms" in page
    assert row_badges(page, upstream.url)[0] == ("ok", "healthy")


def test_a_failing_target_turns_unhealthy_when_its_threshold_is_met_and_back_when_it_recovers(
    admin_client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    route = make_route("/api", upstream.url)
    Service.objects.filter(pk=route.service.pk).update(unhealthy_threshold=2, healthy_threshold=2)
    target = route.service.targets.get()
    upstream.forced_status = 503

    first = run_action(admin_client, TARGETS, "check_health_now", target)
    second = run_action(admin_client, TARGETS, "check_health_now", target)

    assert first == [f"{upstream.url}: failed (HTTP 503); still healthy until 2 checks in a row fail."]
    assert second == [f"{upstream.url}: failed (HTTP 503); now unhealthy."]
    target.refresh_from_db()
    assert not target.healthy and target.response_time_ms is None and target.last_health_check is not None
    assert unavailable_target_ids([target.pk]) == {target.pk}  # the balancer skips it from now on
    assert row_badges(admin_client.get(TARGETS).content.decode(), upstream.url)[0] == ("bad", "unhealthy")

    upstream.forced_status = None
    [recovering] = run_action(admin_client, TARGETS, "check_health_now", target)
    [recovered] = run_action(admin_client, TARGETS, "check_health_now", target)

    assert recovering.endswith("still unhealthy until 2 checks in a row pass.")
    assert recovered.endswith("now healthy.")
    assert get_state_store().get(down_key(target.pk)) is None
    target.refresh_from_db()
    assert target.healthy


def test_a_health_check_of_a_service_checks_each_enabled_target_and_skips_disabled_ones(
    admin_client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    route = make_route("/api", [upstream.url, dead_url, "http://10.0.0.3:80"])
    Target.objects.filter(url="http://10.0.0.3:80").update(enabled=False)

    shown = run_action(admin_client, SERVICES, "check_health_now", route.service)

    assert shown[0] == CHECK_SKIPPED_MESSAGE.format(count=1)
    assert shown[1].startswith(f"{upstream.url}: answered in ")
    assert shown[2].startswith(f"{dead_url}: failed (cannot connect")
    assert len(shown) == 3
    assert Target.objects.get(url="http://10.0.0.3:80").last_health_check is None
    assert Target.objects.get(url=dead_url).last_health_check is not None


def test_a_health_check_now_without_the_state_store_records_nothing_and_says_so(
    admin_client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None
) -> None:
    route = make_route("/api", upstream.url)
    target = route.service.targets.get()

    assert run_action(admin_client, TARGETS, "check_health_now", target) == [CHECK_NOT_RECORDED_MESSAGE]
    target.refresh_from_db()
    assert target.last_health_check is None


# --- purge a route's cache -----------------------------------------------------------------------


@pytest.mark.parametrize("changelist", [ROUTES, "/admin/performance/responsecachepolicy/"])
def test_purging_a_routes_cache_drops_its_answers_and_keeps_other_routes(
    admin_client: Any, make_route: Any, upstream: UpstreamServer, changelist: str
) -> None:
    purged = make_route("/api", upstream.url)
    kept = make_route("/other", upstream.url)
    for route in (purged, kept):
        ResponseCachePolicy.objects.create(route=route)
    for path in ("/api/a", "/api/b", "/other/a"):
        admin_client.get(path)
        assert admin_client.get(path)[X_CACHE_HEADER] == HIT
    selected = purged if changelist == ROUTES else ResponseCachePolicy.objects.get(route=purged)

    shown = run_action(admin_client, changelist, "purge_cached_answers", selected)

    assert shown == [PURGED_MESSAGE.format(count=2, routes=1)]
    assert admin_client.get("/api/a")[X_CACHE_HEADER] == MISS
    assert admin_client.get("/other/a")[X_CACHE_HEADER] == HIT


def test_the_actions_are_offered_on_the_lists(admin_client: Any, make_route: Any) -> None:
    make_route("/api", "http://10.0.0.1:80")
    offered = {
        page: set(re.findall(r'<option value="(\w+)">', admin_client.get(page).content.decode()))
        for page in (ROUTES, TARGETS, SERVICES)
    }
    assert {"enable_routes", "disable_routes", "purge_cached_answers"} <= offered[ROUTES]
    assert {"enable_targets", "disable_targets", "check_health_now"} <= offered[TARGETS]
    assert "check_health_now" in offered[SERVICES]
