"""The in-process snapshot: zero queries when warm, rebuilt on every config change."""

from __future__ import annotations

from typing import Any

from django.db.models import F

from routing.config_version import CONFIG_VERSION_KEY, ConfigWatcher
from routing.models import ConfigRevision, Route
from routing.snapshot import get_snapshot
from tests.upstream_server import UpstreamServer


def test_warm_proxied_request_makes_zero_database_queries(
    client: Any, make_route: Any, upstream: UpstreamServer, django_assert_num_queries: Any
) -> None:
    make_route("/api", upstream.url)
    assert client.get("/api/echo").status_code == 200  # warms the snapshot and the pool
    with django_assert_num_queries(0):
        assert client.get("/api/echo").status_code == 200
        assert client.post("/api/echo", b'{"a":1}', content_type="application/json").status_code == 200


def test_warm_error_answers_make_zero_database_queries(client: Any, make_route: Any, django_assert_num_queries: Any) -> None:
    make_route("/mcp", "http://127.0.0.1:9", kind="mcp", methods=["POST"])
    client.post("/mcp", "{bad", content_type="application/json")  # warms every stage's cache
    with django_assert_num_queries(0):
        assert client.get("/nowhere").status_code == 404
        assert client.get("/mcp").status_code == 405
        assert client.post("/mcp", "{bad", content_type="application/json").status_code == 400


def test_saving_a_route_is_visible_to_the_next_request(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/old", upstream.url)
    assert client.get("/old/echo").status_code == 200
    route.path = "/new"
    route.save()
    assert client.get("/new/echo").status_code == 200
    assert client.get("/old/echo").status_code == 404


def test_disabling_a_route_takes_effect_at_once(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/api", upstream.url)
    assert client.get("/api/echo").status_code == 200
    Route.objects.filter(pk=route.pk).update(enabled=False)  # bypasses signals: not seen yet
    assert client.get("/api/echo").status_code == 200
    route.enabled = False
    route.save()
    assert client.get("/api/echo").status_code == 404


def test_deleting_a_target_is_visible_to_the_next_request(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    route = make_route("/api", upstream.url)
    assert client.get("/api/echo").status_code == 200
    route.service.targets.get().delete()
    assert client.get("/api/echo").status_code == 503


def test_every_save_and_delete_bumps_the_revision(make_route: Any) -> None:
    route = make_route("/api", "http://127.0.0.1:9")
    before = ConfigRevision.objects.get(pk=1).revision
    route.priority = 3
    route.save()
    route.service.targets.get().delete()
    assert ConfigRevision.objects.get(pk=1).revision == before + 2


def test_committed_change_increments_the_shared_version(
    make_route: Any, state_store: Any, django_capture_on_commit_callbacks: Any
) -> None:
    before = int(state_store.get(CONFIG_VERSION_KEY) or 0)
    with django_capture_on_commit_callbacks(execute=True):
        make_route("/api", "http://127.0.0.1:9")  # service, target, route: three saves
    assert int(state_store.get(CONFIG_VERSION_KEY)) == before + 3


def bump_like_another_process(state_store: Any) -> None:
    """What a save in another process leaves behind: a new revision row and shared version."""
    ConfigRevision.objects.filter(pk=1).update(revision=F("revision") + 1)
    state_store.incr(CONFIG_VERSION_KEY)


def test_watcher_rebuilds_snapshot_after_a_change_by_another_process(make_route: Any, state_store: Any) -> None:
    make_route("/api", "http://127.0.0.1:9")
    first = get_snapshot()
    watcher = ConfigWatcher(interval=60)
    watcher.check_once()
    assert get_snapshot() is first  # nothing changed: the same snapshot object is served
    bump_like_another_process(state_store)
    assert get_snapshot() is first  # not seen until the watcher looks
    watcher.check_once()
    assert get_snapshot() is not first
