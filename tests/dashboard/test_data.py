"""What /dashboard/data.json says after real traffic through the pipeline: the whole gateway,
the hour's series, services and targets, routes, top keys and tools, alerts, cache, pools and
processes; and a page that says what it cannot show when the state store is down."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.overview import POOLS_FAILED, RECENT_WINDOW_SECONDS, STATE_STORE_DOWN, TOP_COUNT
from monitoring.alerts import evaluate_alerts
from monitoring.models import AlertRule
from monitoring.process import process_name
from security.api_keys import issue_api_key
from tests.dashboard.conftest import INTERVAL, flush_into_a_settled_window
from tests.upstream_server import UpstreamServer

EXCHANGES, ERRORS = 7, 2


def read_data(client: Client) -> dict[str, Any]:
    response = client.get("/dashboard/data.json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def call_tool(client: Client, name: str) -> Any:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}}
    return client.post("/mcp", json.dumps(message), content_type="application/json")


@pytest.fixture
def traffic(client: Client, make_route: Any, upstream: UpstreamServer) -> dict[str, str]:
    """7 exchanges, 2 of them errors, on two routes of one upstream, flushed; plus a route that
    had no traffic. Returns alice's API key id."""
    make_route("/api", upstream.url, name="api")
    make_route("/mcp", upstream.url, name="tools", kind="mcp")
    make_route("/idle", upstream.url, name="idle")
    alice, secret = issue_api_key(name="alice")
    statuses = [client.get("/api/echo", headers={"X-API-Key": secret}).status_code for _ in range(3)]
    statuses += [client.get("/api/status/500").status_code for _ in range(ERRORS)]
    statuses += [call_tool(client, "add").status_code for _ in range(2)]
    assert statuses == [200, 200, 200, 500, 500, 200, 200]
    flush_into_a_settled_window()
    return {"alice": str(alice.pk)}


def test_the_whole_gateway_counts_every_exchange_of_the_recent_window(staff_client: Client, traffic: Any) -> None:
    data = read_data(staff_client)
    gateway = data["gateway"]
    assert (gateway["count"], gateway["errors"]) == (EXCHANGES, ERRORS)
    assert gateway["error_rate"] == round(ERRORS / EXCHANGES, 4)
    assert gateway["throughput_rps"] == round(EXCHANGES / RECENT_WINDOW_SECONDS, 4)
    assert 0 < gateway["p50_ms"] <= gateway["p95_ms"] <= gateway["p99_ms"]
    assert (data["window_seconds"], data["interval_seconds"]) == (RECENT_WINDOW_SECONDS, INTERVAL)
    assert data["unavailable"] == {}


def test_the_series_covers_the_hour_with_the_traffic_in_one_point(staff_client: Client, traffic: Any) -> None:
    points = read_data(staff_client)["series"]
    assert len(points) == 3600 // INTERVAL
    assert [b["t"] - a["t"] for a, b in zip(points, points[1:])] == [INTERVAL] * (len(points) - 1)
    [busy] = [point for point in points if point["count"]]
    assert busy["count"] == EXCHANGES
    assert busy["throughput_rps"] == round(EXCHANGES / INTERVAL, 4)
    assert busy["error_rate"] == round(ERRORS / EXCHANGES, 4)
    assert 0 < busy["p50_ms"] <= busy["p95_ms"] <= busy["p99_ms"]
    quiet = points[0]
    assert (quiet["count"], quiet["throughput_rps"], quiet["p95_ms"]) == (0, 0.0, None)


def test_routes_show_their_traffic_busiest_first_and_quiet_ones_too(staff_client: Client, traffic: Any) -> None:
    routes = read_data(staff_client)["routes"]
    assert [(route["name"], route["count"], route["errors"]) for route in routes] == [
        ("api", 5, 2),
        ("tools", 2, 0),
        ("idle", 0, 0),
    ]
    api = routes[0]
    assert (api["path"], api["service"], api["enabled"], api["error_rate"]) == ("/api", "api", True, 0.4)
    assert 0 < api["p95_ms"] <= api["p99_ms"]
    assert (routes[2]["p95_ms"], routes[2]["p99_ms"]) == (None, None)


def test_targets_show_health_circuit_connections_and_traffic(
    staff_client: Client, traffic: Any, upstream: UpstreamServer
) -> None:
    services = {service["name"]: service for service in read_data(staff_client)["services"]}
    assert sorted(services) == ["api", "idle", "tools"]
    [target] = services["api"]["targets"]
    assert target["url"] == upstream.url
    assert (target["health"], target["status"], target["circuit"], target["in_flight"]) == (
        "healthy",
        "serving",
        "closed",
        0,
    )
    assert target["checked_ms"] is None  # no active check has run in this test
    # Targets are counted by URL: the api and tools routes share this upstream.
    assert (target["traffic"]["count"], target["traffic"]["errors"]) == (EXCHANGES, ERRORS)
    assert services["api"]["lb_policy"] == "Round robin"


def test_a_disabled_target_says_so(staff_client: Client, traffic: Any) -> None:
    from routing.models import Target

    Target.objects.filter(service__name="idle").update(enabled=False)
    services = {service["name"]: service for service in read_data(staff_client)["services"]}
    assert [target["health"] for target in services["idle"]["targets"]] == ["disabled"]


def test_top_api_keys_are_named(staff_client: Client, traffic: dict[str, str]) -> None:
    keys = read_data(staff_client)["top_api_keys"]
    assert [(key["id"], key["name"], key["count"]) for key in keys] == [(traffic["alice"], "alice", 3)]


def test_top_tools_are_named_by_service_and_tool(staff_client: Client, traffic: Any) -> None:
    tools = read_data(staff_client)["top_tools"]
    assert [(tool["name"], tool["count"], tool["error_rate"]) for tool in tools] == [("tools:add", 2, 0.0)]


def test_only_the_busiest_keys_are_listed(staff_client: Client, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url, name="api")
    secrets = [issue_api_key(name=f"key-{number:02}")[1] for number in range(TOP_COUNT + 2)]
    for number, secret in enumerate(secrets):
        for _ in range(number + 1):  # key-00 once, key-01 twice, ...
            assert staff_client.get("/api/echo", headers={"X-API-Key": secret}).status_code == 200
    flush_into_a_settled_window()
    keys = read_data(staff_client)["top_api_keys"]
    assert [key["name"] for key in keys] == [f"key-{number:02}" for number in range(TOP_COUNT + 1, 1, -1)]


def test_firing_alerts_are_listed_with_their_value_and_since_when(staff_client: Client, traffic: Any) -> None:
    AlertRule.objects.create(name="any latency", metric="p95_latency_ms", threshold=0, window_seconds=300)
    AlertRule.objects.create(name="very slow", metric="p95_latency_ms", threshold=60_000, window_seconds=300)
    before = time.time()
    evaluate_alerts()
    alerts = read_data(staff_client)["alerts"]
    assert alerts["enabled_rules"] == 2
    [firing] = alerts["firing"]
    assert (firing["name"], firing["metric"], firing["scope"], firing["threshold"]) == (
        "any latency",
        "p95_latency_ms",
        "whole gateway",
        0,
    )
    assert firing["description"] == "p95 latency (ms) above"
    assert firing["value"] > 0
    assert before - 1 <= firing["since"] <= time.time()


def test_cache_pools_and_processes_are_reported(
    staff_client: Client, traffic: Any, upstream: UpstreamServer
) -> None:
    data = read_data(staff_client)
    assert data["cache"] == {"hits": 0, "misses": 0, "evictions": 0, "size": 0, "hit_rate": 0.0, "miss_rate": 0.0}
    origin = urlsplit(upstream.url)
    [pool] = [pool for pool in data["pools"] if pool["origin"] == f"http://{origin.hostname}:{origin.port}"]
    assert pool["opened_total"] >= 1
    assert process_name() in [process["process"] for process in data["processes"]]


def test_with_the_state_store_down_the_data_names_what_is_missing(
    staff_client: Client, make_route: Any, upstream: UpstreamServer, state_store_down: None
) -> None:
    make_route("/api", upstream.url, name="api")
    AlertRule.objects.create(name="any latency", metric="p95_latency_ms", threshold=0, window_seconds=300)
    data = read_data(staff_client)
    assert data["unavailable"] == {
        part: STATE_STORE_DOWN
        for part in ("gateway", "routes", "services", "top_api_keys", "top_tools", "series", "alerts", "cache", "processes")
    }
    # What the database knows is still shown.
    assert [route["name"] for route in data["routes"]] == ["api"]
    [target] = data["services"][0]["targets"]
    assert (target["url"], target["health"], target["circuit"]) == (upstream.url, "unknown", None)
    assert (data["alerts"], data["cache"], data["series"]) == (None, None, [])


def test_pools_that_cannot_be_read_leave_the_rest_of_the_data(
    staff_client: Client, traffic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pool_stats is per process and being reworked; its failure must cost only its own part."""

    def broken_pool_stats() -> list[Any]:
        raise RuntimeError("pool internals changed")

    monkeypatch.setattr("dashboard.overview.pool_stats", broken_pool_stats)
    data = read_data(staff_client)
    assert (data["pools"], data["unavailable"]) == (None, {"pools": POOLS_FAILED})
    assert data["gateway"]["count"] == EXCHANGES


def test_the_data_costs_the_same_queries_however_many_services_and_routes(
    staff_client: Client, make_route: Any, upstream: UpstreamServer
) -> None:
    """No query per row: polling every 5 s must stay cheap on a large gateway."""

    def queries_for_one_read() -> int:
        with CaptureQueriesContext(connection) as queries:
            read_data(staff_client)
        return len(queries)

    make_route("/one", upstream.url)
    few = queries_for_one_read()
    for number in range(5):
        make_route(f"/more-{number}", [f"{upstream.url}/a", f"{upstream.url}/b"])
    assert queries_for_one_read() == few
