"""The enforce_rate_limits stage on the real request path (Django test client, real upstream),
on both backends with a fake clock, and with Redis unreachable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from gateway_project import pipeline
from gateway_project.errors import PROBLEM_CONTENT_TYPE
from gateway_project.state import reset_state_store
from routing import stages as routing_stages
from security.models import RateLimitPolicy
from security.ratelimit import (
    JSONRPC_RATE_LIMITED,
    LIMIT_HEADER,
    REMAINING_HEADER,
    RESET_HEADER,
    RETRY_AFTER_HEADER,
    enforce_rate_limits,
    limiters,
)
from security.ratelimit_algorithms import MemoryRateLimiter, RedisRateLimiter
from tests.gateway_project.conftest import REDIS_TEST_URL, FakeClock, delete_redis_keys
from tests.upstream_server import UpstreamServer

QUOTA_HEADERS = (LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER)


def test_rate_limits_run_right_after_route_matching() -> None:
    """Route and tool scopes are known only once the route is matched."""
    stages = pipeline.REQUEST_STAGES
    assert stages.index(enforce_rate_limits) > stages.index(routing_stages.find_route)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture(params=["memory", "redis"])
def limiter_backend(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[str]:
    """Memory, or real Redis shared with the state store; both on the fake clock."""
    if request.param == "memory":
        with override_settings(REDIS_URL=""):
            reset_state_store()
            limiters.use(MemoryRateLimiter(clock=clock))
            yield "memory"
        reset_state_store()
        return
    prefix = settings.GATEWAY_STATE_PREFIX
    with override_settings(REDIS_URL=REDIS_TEST_URL):
        reset_state_store()
        limiters.use(RedisRateLimiter(REDIS_TEST_URL, prefix=prefix, clock=clock))
        yield "redis"
    reset_state_store()
    delete_redis_keys(prefix)


@pytest.fixture
def no_default_ip_limit() -> Iterator[None]:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


def sliding_policy(name: str, limit: int, window: float, scope: str = "ip", **fields: Any) -> RateLimitPolicy:
    return RateLimitPolicy.objects.create(
        name=name, algorithm="sliding_window", scope=scope, limit=limit, window_seconds=window, **fields
    )


def call_tool(client: Any, tool: str, request_id: int = 1, path: str = "/mcp") -> Any:
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
    return client.post(path, json.dumps(message), content_type="application/json")


def test_allowed_answers_carry_the_quota_headers(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None, clock: FakeClock
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("three per ten", 3, 10)
    first = client.get("/api/echo")
    clock.advance(4)
    second = client.get("/api/echo")
    assert first.status_code == second.status_code == 200
    assert [first[name] for name in QUOTA_HEADERS] == ["3", "2", "10"]
    assert [second[name] for name in QUOTA_HEADERS] == ["3", "1", "6"]  # the t=0 request leaves at t=10
    assert RETRY_AFTER_HEADER not in second


def test_over_the_limit_gets_429_problem_json_with_exact_headers(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None, clock: FakeClock
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("two per ten", 2, 10)
    client.get("/api/echo")
    clock.advance(3)
    client.get("/api/echo")
    clock.advance(1.5)
    refused = client.get("/api/echo")
    assert refused.status_code == 429
    assert refused["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert {name: refused[name] for name in (*QUOTA_HEADERS, RETRY_AFTER_HEADER)} == {
        LIMIT_HEADER: "2", REMAINING_HEADER: "0", RESET_HEADER: "6", RETRY_AFTER_HEADER: "6",
    }
    body = json.loads(refused.content)
    assert body["type"] == "urn:mcp-gateway:error:rate_limited" and body["status"] == 429
    assert "two per ten" in body["detail"]
    assert len(upstream.requests) == 2  # the refused request never reached the upstream


def test_over_the_limit_on_an_mcp_route_gets_a_jsonrpc_error_with_the_id(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None
) -> None:
    make_route("/mcp", f"{upstream.url}/echo", kind="mcp")
    RateLimitPolicy.objects.create(name="bucket", algorithm="token_bucket", scope="ip", rate_per_second=0.5, burst=1)
    assert call_tool(client, "search", request_id=1).status_code == 200
    refused = call_tool(client, "search", request_id=42)
    assert refused.status_code == 429
    assert refused[RETRY_AFTER_HEADER] == "2" and refused[REMAINING_HEADER] == "0" and refused[LIMIT_HEADER] == "1"
    body = json.loads(refused.content)
    assert body["id"] == 42
    assert body["error"]["code"] == JSONRPC_RATE_LIMITED
    assert body["error"]["data"] == {"status": 429, "type": "rate_limited"}


def test_each_tool_has_its_own_counter(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None
) -> None:
    make_route("/mcp", f"{upstream.url}/echo", kind="mcp")
    sliding_policy("one call per tool", 1, 60, scope="tool")
    assert call_tool(client, "search").status_code == 200
    assert call_tool(client, "fetch").status_code == 200
    assert call_tool(client, "search").status_code == 429
    assert call_tool(client, "fetch").status_code == 429
    tools_list = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}
    assert client.post("/mcp", json.dumps(tools_list), content_type="application/json").status_code == 200


def test_route_scope_counts_each_route_and_skips_routes_not_selected(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None
) -> None:
    first = make_route("/one", upstream.url)
    second = make_route("/two", upstream.url)
    make_route("/free", upstream.url)
    policy = sliding_policy("one per route", 1, 60, scope="route")
    policy.routes.set([first, second])
    assert [client.get(path + "/echo").status_code for path in ("/one", "/two", "/one", "/two")] == [200, 200, 429, 429]
    assert [client.get("/free/echo").status_code for _ in range(3)] == [200, 200, 200]


def test_the_default_ip_limit_applies_with_no_policy_configured(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str
) -> None:
    make_route("/api", upstream.url)
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="2/60"):
        statuses = [client.get("/api/echo").status_code for _ in range(3)]
        other_client = client.get("/api/echo", REMOTE_ADDR="10.9.9.9")
    assert statuses == [200, 200, 429]
    assert other_client.status_code == 200 and other_client[REMAINING_HEADER] == "1"


def test_the_default_ip_limit_also_covers_unrouted_paths(client: Any, limiter_backend: str, db: Any) -> None:
    """Scanning unknown URLs spends the same per-IP quota: the limit runs before matching."""
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="2/60"):
        statuses = [client.get(f"/probe-{n}").status_code for n in range(3)]
    assert statuses == [404, 404, 429]


def test_the_default_ip_limit_is_off_at_zero(client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str) -> None:
    make_route("/api", upstream.url)
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        response = client.get("/api/echo")
    assert response.status_code == 200 and LIMIT_HEADER not in response


def test_a_disabled_policy_is_ignored(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None
) -> None:
    make_route("/api", upstream.url)
    policy = sliding_policy("one per minute", 1, 60)
    assert [client.get("/api/echo").status_code for _ in range(2)] == [200, 429]
    policy.enabled = False
    policy.save()
    assert [client.get("/api/echo").status_code for _ in range(2)] == [200, 200]


def test_the_most_restrictive_policy_sets_the_headers(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("five per minute", 5, 60)
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="100/60"):
        response = client.get("/api/echo")
    assert [response[name] for name in QUOTA_HEADERS] == ["5", "4", "60"]


def test_user_and_api_key_scopes_skip_anonymous_callers(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("per user", 1, 60, scope="user")
    sliding_policy("per key", 1, 60, scope="api_key")
    assert [client.get("/api/echo").status_code for _ in range(3)] == [200, 200, 200]


def test_a_warm_request_with_a_policy_makes_zero_database_queries(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, django_assert_num_queries: Any
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("hundred per minute", 100, 60, scope="route")
    assert client.get("/api/echo").status_code == 200  # warms the snapshot, policies and pool
    with django_assert_num_queries(0):
        response = client.get("/api/echo")
    assert response.status_code == 200 and response[REMAINING_HEADER] == "98"


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(
    client: Any, make_route: Any, upstream: UpstreamServer, limiter_backend: str, no_default_ip_limit: None
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("one per minute", 1, 60)
    spoofed = [client.get("/api/echo", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code for n in (1, 2)]
    assert spoofed == [200, 429]
    with override_settings(GATEWAY_RATE_LIMIT_TRUSTED_PROXIES=1):
        behind_proxy = [client.get("/api/echo", HTTP_X_FORWARDED_FOR=f"6.6.6.6, 10.0.0.{n}").status_code for n in (1, 2, 1)]
    assert behind_proxy == [200, 200, 429]


def test_redis_down_fail_open_limits_per_process(
    client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None, no_default_ip_limit: None, caplog: Any
) -> None:
    make_route("/api", upstream.url)
    sliding_policy("two per minute", 2, 60)
    with override_settings(GATEWAY_RATE_LIMIT_FAILURE_MODE="open"):
        responses = [client.get("/api/echo") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0][REMAINING_HEADER] == "1"
    assert "rate limiting degraded to local behaviour" in caplog.text


def test_redis_down_fail_closed_answers_503_with_retry_after(
    client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None
) -> None:
    make_route("/api", upstream.url)
    with override_settings(GATEWAY_RATE_LIMIT_FAILURE_MODE="closed"):
        refused = client.get("/api/echo")
    assert refused.status_code == 503
    assert refused[RETRY_AFTER_HEADER] == "5"
    assert refused["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(refused.content)["type"] == "urn:mcp-gateway:error:rate_limit_unavailable"
    assert upstream.requests == []
