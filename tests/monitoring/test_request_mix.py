"""A known mix of requests through the real pipeline gives exact counts and error rates, and
plausible percentiles, per route, target, API key and tool."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitoring.flush import flush_metrics
from monitoring.queries import KeyStats, series, snapshot, stats_for, totals
from security.api_keys import issue_api_key
from tests.monitoring.conftest import INTERVAL, T0
from tests.upstream_server import UpstreamServer

# Flushed just after T0 into the window T0; read a little later, once that window has settled.
FLUSHED_AT = T0 + 1
READ_AT = T0 + 5


def call_tool(client: Any, name: str, **headers: str) -> Any:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}}
    return client.post("/mcp", json.dumps(message), content_type="application/json", headers=headers)


def counts(stats: dict[str, KeyStats]) -> dict[str, tuple[int, int]]:
    return {key: (entry.count, entry.errors) for key, entry in stats.items()}


@pytest.fixture
def request_mix(
    client: Any, make_route: Any, upstream: UpstreamServer, second_upstream: UpstreamServer
) -> dict[str, str]:
    """16 exchanges, 3 of them errors; returns the API key ids by owner."""
    make_route("/api", upstream.url, name="api")
    make_route("/mcp", second_upstream.url, name="tools", kind="mcp")
    alice, alice_secret = issue_api_key(name="alice")
    bob, bob_secret = issue_api_key(name="bob")
    as_alice = {"Authorization": f"Bearer {alice_secret}"}

    statuses = [client.get("/api/echo", headers=as_alice).status_code for _ in range(3)]
    statuses += [client.get("/api/echo").status_code for _ in range(3)]
    statuses += [client.get("/api/status/500").status_code]
    statuses += [client.get("/api/status/500", headers={"X-API-Key": bob_secret}).status_code]
    statuses += [call_tool(client, "add", **as_alice).status_code for _ in range(3)]
    second_upstream.forced_status = 500
    statuses += [call_tool(client, "search").status_code]
    second_upstream.forced_status = None
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    statuses += [client.post("/mcp", json.dumps(tools_list), content_type="application/json").status_code]
    statuses += [client.post("/mcp", b"{not json", content_type="application/json").status_code]
    statuses += [client.get("/nowhere").status_code for _ in range(2)]
    assert statuses == [200] * 6 + [500, 500] + [200] * 3 + [500, 200, 400, 404, 404]
    assert flush_metrics(now=FLUSHED_AT)
    return {"alice": str(alice.pk), "bob": str(bob.pk)}


def test_every_exchange_counts_for_the_whole_gateway_and_only_5xx_are_errors(request_mix: dict[str, str]) -> None:
    gateway = snapshot("gateway", now=READ_AT)["all"]
    assert (gateway.count, gateway.errors) == (16, 3)
    assert gateway.error_rate == pytest.approx(3 / 16)


def test_routes_count_their_own_exchanges_and_errors(request_mix: dict[str, str]) -> None:
    routes = snapshot("route", now=READ_AT)
    # The unrouted 404s count for no route; the malformed body was refused on its route.
    assert counts(routes) == {"api": (8, 2), "tools": (6, 1)}
    assert routes["api"].error_rate == 0.25


def test_targets_count_only_exchanges_that_reached_them(
    request_mix: dict[str, str], upstream: UpstreamServer, second_upstream: UpstreamServer
) -> None:
    assert counts(snapshot("target", now=READ_AT)) == {upstream.url: (8, 2), second_upstream.url: (5, 1)}


def test_api_keys_count_the_requests_made_with_them(request_mix: dict[str, str]) -> None:
    assert counts(snapshot("api_key", now=READ_AT)) == {request_mix["alice"]: (6, 0), request_mix["bob"]: (1, 1)}


def test_tools_count_tools_call_per_service_and_tool(request_mix: dict[str, str]) -> None:
    tools = snapshot("tool", now=READ_AT)
    assert counts(tools) == {"tools:add": (3, 0), "tools:search": (1, 1)}
    assert tools["tools:search"].error_rate == 1.0


def test_throughput_is_the_count_over_the_window(request_mix: dict[str, str]) -> None:
    assert snapshot("route", window_seconds=60, now=READ_AT)["api"].throughput_rps == pytest.approx(8 / 60)
    assert snapshot("route", window_seconds=10, now=READ_AT)["api"].throughput_rps == pytest.approx(8 / 10)


def test_percentiles_are_ordered_and_averages_lie_between_them(request_mix: dict[str, str]) -> None:
    for stats in snapshot("route", now=READ_AT).values():
        assert stats.p50_ms is not None and stats.p95_ms is not None and stats.p99_ms is not None
        assert 0 < stats.p50_ms <= stats.p95_ms <= stats.p99_ms < 5_000
        assert 0 < stats.avg_ms < 5_000


def test_the_window_ends_at_the_last_settled_flush(request_mix: dict[str, str]) -> None:
    # Too early: the processes may still be flushing into T0's window, so it is not read yet.
    assert snapshot("route", now=T0 + 1) == {}
    # A minute later the window has slid past T0.
    assert snapshot("route", window_seconds=60, now=T0 + 65) == {}
    assert snapshot("route", window_seconds=120, now=T0 + 65)["api"].count == 8


def test_the_series_has_a_point_per_interval_with_empty_ones_in_between(request_mix: dict[str, str]) -> None:
    points = series("route", "api", minutes=1, now=READ_AT)
    assert [point.t for point in points] == [int(T0) - INTERVAL * back for back in range(5, -1, -1)]
    assert [point.count for point in points] == [0, 0, 0, 0, 0, 8]
    assert points[-1].error_rate == 0.25 and points[-1].p95_ms is not None
    assert points[0].p95_ms is None and points[0].error_rate == 0.0


def test_a_full_hour_of_series_has_360_points() -> None:
    assert len(series("gateway", "all", minutes=60, now=READ_AT)) == 3600 // INTERVAL


def test_totals_accumulate_across_flushes(request_mix: dict[str, str], client: Any) -> None:
    client.get("/api/echo")
    assert flush_metrics(now=FLUSHED_AT + INTERVAL)
    api = totals()["route"]["api"]
    assert (api.count, api.errors) == (9, 2)
    both_windows = stats_for("route", "api", window_seconds=60, now=READ_AT + INTERVAL)
    assert (both_windows.count, both_windows.errors) == (9, 2)


def test_slow_answers_show_in_the_high_percentiles_only(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url, name="api")
    for _ in range(18):
        assert client.get("/api/echo").status_code == 200
    upstream.delay_seconds = 0.5
    for _ in range(2):
        assert client.get("/api/echo").status_code == 200
    upstream.delay_seconds = 0.0
    assert flush_metrics(now=FLUSHED_AT)
    stats = stats_for("route", "api", now=READ_AT)
    assert stats.count == 20
    assert stats.p50_ms is not None and stats.p50_ms < 250
    assert stats.p95_ms is not None and stats.p95_ms >= 500 / 1.19
    assert stats.p99_ms is not None and stats.p99_ms >= 500 / 1.19


def test_unknown_dimensions_are_refused_with_the_known_ones_named() -> None:
    with pytest.raises(ValueError, match="choose one of: gateway, route, target, api_key, tool"):
        snapshot("region")


def test_a_stream_counts_once_when_it_closes_with_its_whole_duration(
    client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/api", upstream.url, name="api")
    response = client.get("/api/sse?events=3&delay=0.1")
    assert response.status_code == 200
    assert flush_metrics(now=FLUSHED_AT)
    assert snapshot("route", now=READ_AT) == {}  # still open: not counted yet
    # Reading to the end closes the response (the test client does, as a WSGI server would).
    assert b"".join(response.streaming_content).count(b"data:") == 3
    assert flush_metrics(now=FLUSHED_AT + INTERVAL)
    stream = stats_for("route", "api", now=READ_AT + INTERVAL)
    assert (stream.count, stream.errors) == (1, 0)
    assert stream.avg_ms >= 200  # two 0.1 s pauses between three events
