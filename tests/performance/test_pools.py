"""Upstream pools: a bounded wait then 503, idle expiry, validation, statistics, streams.

Through the pipeline for what callers see (the wait, the 503 in the caller's shape, streams);
directly on a pool, with a fake clock, for idle expiry and validation.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from django.conf import settings
from django.test import Client, override_settings

from gateway_project.errors import JSONRPC_SERVER_ERROR
from gateway_project.state import get_state_store
from performance.pools import (
    POOL_EXHAUSTED_RETRY_AFTER_SECONDS,
    RETRY_AFTER_HEADER,
    IdleSweeper,
    PoolExhausted,
    PoolPolicy,
    PoolStats,
    UpstreamPoolManager,
    pool_stats,
    release,
)
from routing import circuit
from routing.health import passive_failures_key
from routing.target_status import unavailable_target_ids
from tests.error_assertions import assert_jsonrpc_error, assert_problem
from tests.gateway_project.conftest import FakeClock
from tests.settings_probe import settings_in_subprocess
from tests.upstream_server import UpstreamServer

# One connection per origin, and a refusal after a short wait: a second request meets a full pool.
ONE_CONNECTION = {"GATEWAY_POOL_MAXSIZE": 1, "GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS": 0.2}
LONG_STREAM = "/sse?events=100&delay=0.1"  # an event stream that outlives the test
POLICY = PoolPolicy(max_size=4, min_idle=0, idle_timeout=300.0, acquire_timeout=5.0)


def stats_of(upstream: UpstreamServer) -> PoolStats:
    """This process's statistics for the pool to ``upstream``."""
    [stats] = [stats for stats in pool_stats() if stats["origin"] == upstream.url]
    return stats


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def requests_to(upstream: UpstreamServer, path_end: str) -> int:
    return sum(1 for request in upstream.requests if str(request["path"]).endswith(path_end))


@pytest.fixture
def held_stream(client: Any) -> Iterator[Callable[[str], Any]]:
    """Open event streams through the gateway; each holds its upstream connection until closed."""
    streams: list[Any] = []

    def open_stream(path: str) -> Any:
        response = client.get(path, headers={"Accept": "text/event-stream"})
        assert response.status_code == 200
        streams.append(response)
        return response

    yield open_stream
    for stream in streams:
        stream.close()


# --- waiting for a connection, and the 503 when none comes --------------------------------------


@override_settings(GATEWAY_POOL_MAXSIZE=1)
def test_second_request_waits_for_the_connection_a_slow_request_holds(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    assert client.get("/api/echo").status_code == 200  # warm: snapshot built, connection pooled
    upstream.delay_seconds = 0.5
    first: dict[str, int] = {}
    slow = threading.Thread(target=lambda: first.update(status=Client().get("/api/echo").status_code))
    slow.start()
    wait_until(lambda: len(upstream.requests) == 2)  # the slow request holds the one connection

    second = client.get("/api/echo")
    slow.join()

    assert (first["status"], second.status_code) == (200, 200)
    assert len(upstream.connection_ports) == 1  # the waiting request got the same connection
    stats = stats_of(upstream)
    assert (stats["waits_total"], stats["timeouts_total"], stats["in_use"]) == (1, 0, 0)


@override_settings(**ONE_CONNECTION)
def test_full_pool_answers_jsonrpc_503_on_an_mcp_route_within_the_acquire_timeout(
    client: Any, make_route: Any, upstream: UpstreamServer, held_stream: Callable[[str], Any]
) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    held_stream("/mcp" + LONG_STREAM)
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}

    started = time.monotonic()
    refused = client.post("/mcp/echo", json.dumps(message), content_type="application/json")
    waited = time.monotonic() - started

    assert_jsonrpc_error(refused, 503, PoolExhausted.code, 7, JSONRPC_SERVER_ERROR)
    assert refused[RETRY_AFTER_HEADER] == str(POOL_EXHAUSTED_RETRY_AFTER_SECONDS)
    assert 0.2 <= waited < 2.0  # the acquire timeout, not a hang
    assert requests_to(upstream, "/echo") == 0
    stats = stats_of(upstream)
    assert (stats["in_use"], stats["waits_total"], stats["timeouts_total"]) == (1, 1, 1)


@override_settings(**ONE_CONNECTION)
def test_full_pool_answers_problem_json_503_on_an_http_route(
    client: Any, make_route: Any, upstream: UpstreamServer, held_stream: Callable[[str], Any]
) -> None:
    make_route("/api", upstream.url)
    held_stream("/api" + LONG_STREAM)

    started = time.monotonic()
    refused = client.get("/api/echo")
    waited = time.monotonic() - started

    assert_problem(refused, 503, PoolExhausted.code)
    assert refused[RETRY_AFTER_HEADER] == str(POOL_EXHAUSTED_RETRY_AFTER_SECONDS)
    assert 0.2 <= waited < 2.0
    assert requests_to(upstream, "/echo") == 0


@override_settings(**ONE_CONNECTION)
def test_full_pool_is_not_counted_against_the_target(
    client: Any, make_route: Any, upstream: UpstreamServer, held_stream: Callable[[str], Any]
) -> None:
    route = make_route("/api", upstream.url)
    target_id = route.service.targets.get().id
    stream = held_stream("/api" + LONG_STREAM)

    assert client.get("/api/echo").status_code == 503

    store = get_state_store()
    assert store.get(passive_failures_key(target_id)) is None
    assert store.get(circuit.failures_key(target_id)) is None
    assert unavailable_target_ids([target_id]) == set()
    stream.close()  # the connection comes back: the same target serves the next call
    assert client.get("/api/echo").status_code == 200


# --- streams ----------------------------------------------------------------------------------


@override_settings(GATEWAY_POOL_MAXSIZE=3)
def test_event_streams_hold_their_connections_and_give_them_back(
    client: Any, make_route: Any, upstream: UpstreamServer, held_stream: Callable[[str], Any]
) -> None:
    make_route("/api", upstream.url)
    streams = [held_stream("/api/sse?events=3&delay=0.05") for _ in range(3)]
    assert stats_of(upstream)["in_use"] == 3

    for stream in streams:
        relayed = b"".join(stream.streaming_content)  # events sent meanwhile may share a chunk
        assert relayed.count(b"data: ") == 3
        stream.close()

    stats = stats_of(upstream)
    # The test upstream ends each stream with Connection: close, so none is kept.
    assert (stats["in_use"], stats["idle"], stats["opened_total"], stats["closed_total"]) == (0, 0, 3, 3)
    assert stats["waits_total"] == 0
    assert client.get("/api/echo").status_code == 200


def test_200_open_streams_leave_connections_for_calls_with_the_default_size(
    client: Any, make_route: Any, upstream: UpstreamServer, held_stream: Callable[[str], Any]
) -> None:
    make_route("/api", upstream.url)
    for _ in range(200):
        stream = held_stream("/api/sse?events=2&delay=2")
        assert next(iter(stream.streaming_content)).startswith(b"id: 1")

    assert client.get("/api/echo").status_code == 200

    stats = stats_of(upstream)
    assert stats["max_size"] == settings.GATEWAY_THREADS
    assert (stats["in_use"], stats["waits_total"], stats["timeouts_total"]) == (200, 0, 0)


def test_default_maximum_is_the_thread_count_above_the_in_flight_cap(tmp_path: Path) -> None:
    result = settings_in_subprocess(
        {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_THREADS": "300"},
        "settings.GATEWAY_POOL_MAXSIZE, settings.GATEWAY_MAX_IN_FLIGHT",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["300", "284"]


@pytest.mark.parametrize(
    "variable, value",
    [("GATEWAY_POOL_MAXSIZE", "0"), ("GATEWAY_POOL_MIN_IDLE", "-1"), ("GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS", "-5")],
)
def test_impossible_pool_setting_refuses_to_start(tmp_path: Path, variable: str, value: str) -> None:
    result = settings_in_subprocess({"GATEWAY_DATA_DIR": str(tmp_path), variable: value}, "settings.GATEWAY_POOL_MAXSIZE")
    assert result.returncode != 0
    assert "GATEWAY_POOL_" in result.stderr


# --- idle expiry and validation, on a pool of its own with a fake clock -------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_pool(clock: FakeClock, upstream: UpstreamServer) -> Iterator[Callable[..., Any]]:
    """A pool to ``upstream`` from a manager of its own: the given limits, the fake clock."""
    managers: list[UpstreamPoolManager] = []

    def make(**limits: Any) -> Any:
        manager = UpstreamPoolManager(dataclasses.replace(POLICY, **limits), num_pools=4, clock=clock)
        managers.append(manager)
        return manager, manager.connection_from_url(upstream.url)

    yield make
    for manager in managers:
        manager.clear()


def hold(pool: Any, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    """Send a request and keep its connection: the answer is not read yet."""
    return pool.urlopen("GET", "/echo", headers=headers, retries=False, preload_content=False)


def fetch(pool: Any, headers: dict[str, str] | None = None) -> None:
    response = hold(pool, headers)
    response.read()
    release(response, complete=True)


def test_connection_idle_past_the_timeout_is_closed_by_the_sweep(
    make_pool: Callable[..., Any], clock: FakeClock, upstream: UpstreamServer
) -> None:
    manager, pool = make_pool(idle_timeout=300.0)
    fetch(pool)
    clock.advance(299)
    assert manager.close_idle_connections() == 0
    clock.advance(2)

    assert manager.close_idle_connections() == 1

    assert pool.stats()["idle"] == 0
    fetch(pool)
    assert len(upstream.connection_ports) == 2  # a new connection for the next request


def test_connection_idle_past_the_timeout_is_replaced_when_taken(
    make_pool: Callable[..., Any], clock: FakeClock, upstream: UpstreamServer
) -> None:
    _manager, pool = make_pool(idle_timeout=300.0)
    fetch(pool)
    fetch(pool)
    assert len(upstream.connection_ports) == 1  # fresh: reused
    clock.advance(301)

    fetch(pool)

    assert len(upstream.connection_ports) == 2
    stats = pool.stats()
    assert (stats["opened_total"], stats["closed_total"], stats["idle"]) == (2, 1, 1)


def test_sweeper_thread_closes_expired_connections_with_no_request_coming(
    make_pool: Callable[..., Any], clock: FakeClock
) -> None:
    manager, pool = make_pool(idle_timeout=300.0)
    fetch(pool)
    clock.advance(301)

    sweeper = IdleSweeper(manager, interval=0.01).start()
    try:
        wait_until(lambda: pool.stats()["closed_total"] == 1)
    finally:
        sweeper.stop()

    assert pool.stats()["idle"] == 0


def test_sweep_keeps_the_minimum_of_most_recently_used_idle_connections(
    make_pool: Callable[..., Any], clock: FakeClock, upstream: UpstreamServer
) -> None:
    manager, pool = make_pool(min_idle=1, idle_timeout=300.0)
    responses = [hold(pool) for _ in range(3)]
    for response in responses:  # three connections, returned one after the other
        response.read()
        release(response, complete=True)
        clock.advance(1)
    clock.advance(300)

    assert manager.close_idle_connections() == 2

    assert pool.stats()["idle"] == 1
    fetch(pool)  # the kept connection is reused, expired or not: keeping it was the point
    assert len(upstream.connection_ports) == 3
    assert pool.stats()["opened_total"] == 3


def test_connection_the_upstream_closed_is_dropped_by_validation(
    make_pool: Callable[..., Any], upstream: UpstreamServer
) -> None:
    manager, pool = make_pool()
    fetch(pool)  # kept open
    # The test upstream honours the request's Connection: close, but its answer does not say
    # so: the connection goes back to the pool and the upstream then closes it.
    fetch(pool, headers={"Connection": "close"})
    assert pool.stats()["idle"] == 1

    closed = 0
    deadline = time.monotonic() + 5
    while closed == 0 and time.monotonic() < deadline:  # until the upstream's FIN has arrived
        closed = manager.close_idle_connections()
        time.sleep(0.01)

    assert closed == 1
    stats = pool.stats()
    assert (stats["idle"], stats["opened_total"], stats["closed_total"]) == (0, 1, 1)
    fetch(pool)
    assert len(upstream.connection_ports) == 2


def test_full_pool_waits_the_acquire_timeout_then_raises_empty_pool(make_pool: Callable[..., Any]) -> None:
    _manager, pool = make_pool(max_size=1, acquire_timeout=0.1)
    held = hold(pool)

    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.EmptyPoolError):
        hold(pool)

    assert 0.1 <= time.monotonic() - started < 1.5
    release(held, complete=False)
    fetch(pool)  # the slot came back
    stats = pool.stats()
    assert (stats["waits_total"], stats["timeouts_total"], stats["in_use"]) == (1, 1, 0)


def test_statistics_add_up(make_pool: Callable[..., Any]) -> None:
    _manager, pool = make_pool(max_size=3)
    responses = [hold(pool) for _ in range(3)]
    assert pool.stats()["in_use"] == 3

    for response in responses[:2]:
        response.read()
        release(response, complete=True)
    release(responses[2], complete=False)  # unread: its connection is closed, not reused

    stats = pool.stats()
    assert stats == {
        "origin": pool.scheme + "://" + pool.host + ":" + str(pool.port),
        "max_size": 3,
        "in_use": 0,
        "idle": 2,
        "opened_total": 3,
        "closed_total": 1,
        "waits_total": 0,
        "timeouts_total": 0,
    }
    assert stats["opened_total"] - stats["closed_total"] == stats["idle"] + stats["in_use"]
