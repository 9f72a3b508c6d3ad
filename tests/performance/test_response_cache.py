"""The response cache on the real request path (Django test client, real upstream servers, the
store of the test run's shape: memory embedded, Redis scale-out): what is cached and what never
is, keys that keep principals apart, upstream hints, X-Cache, purge, statistics, Redis down,
and the policy's validation in the model and the admin."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings

from gateway_project import pipeline, worker
from performance.admin import PURGED_MESSAGE
from performance.cache import (
    AGE_HEADER,
    HIT,
    MISS,
    X_CACHE_HEADER,
    cache_stats,
    get_cache_store,
    purge_route,
    run_cache_cleanup,
    serve_from_cache,
    store_in_cache,
    use_cache_store,
)
from performance.cache_store import MemoryCacheStore
from performance.models import CACHEABLE_TOOLS_MESSAGE, TTL_RANGE_MESSAGE, ResponseCachePolicy
from routing.models import Route
from security.api_keys import issue_api_key
from tests.gateway_project.conftest import REDIS_TEST_URL, FakeClock
from tests.upstream_server import UpstreamHandler, UpstreamServer

MODERN_VERSION = "2026-07-28"
TEN_MINUTES_MS = 600_000
CHANGELIST_URL = "/admin/performance/responsecachepolicy/"
ADD_URL = CHANGELIST_URL + "add/"


class ScriptedHandler(UpstreamHandler):
    """GET/HEAD: a JSON document numbering the request. POST: a JSON-RPC answer to the message
    with its own id, a result carrying the server's hints, or an error for the tool "broken"."""

    server: ScriptedUpstream

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record_request(self.command, self.path, dict(self.headers.items()), body)
        served = len(self.server.requests)
        if self.command != "POST":
            self._send(200, json.dumps({"served": served}).encode(), "application/json", self.server.extra_headers)
            return
        answer = json.dumps(self.server.answer(json.loads(body), served))
        if self.server.as_event_stream:
            self._send(200, f"event: message\ndata: {answer}\n\n".encode(), "text/event-stream")
            return
        self._send(self.server.status, answer.encode(), "application/json", self.server.extra_headers)

    do_GET = do_HEAD = do_POST = _dispatch


class ScriptedUpstream(UpstreamServer):
    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = ScriptedHandler
        self.hints: dict[str, Any] = {}  # merged into every result, e.g. ttlMs and cacheScope
        self.result_extra: dict[str, Any] = {}
        self.extra_headers: dict[str, str] = {}
        self.status = 200
        self.as_event_stream = False

    def answer(self, message: dict[str, Any], served: int) -> dict[str, Any]:
        params = message.get("params") or {}
        if params.get("name") == "broken":
            return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32000, "message": "the tool failed"}}
        result = {"served": served, "method": message["method"], **self.result_extra, **self.hints}
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    from performance.pools import close_all_pools

    server = ScriptedUpstream().start()
    yield server
    close_all_pools()
    server.stop()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """This test's cache lives in memory on a fake clock (in both shapes of the suite)."""
    fake = FakeClock()
    use_cache_store(MemoryCacheStore(max_entries=100, clock=fake))
    yield fake
    use_cache_store(None)


def cached_route(make_route: Any, url: str, *, kind: str = "http", path: str | None = None, **policy: Any) -> Route:
    """A route with an enabled cache policy (``policy`` overrides its fields)."""
    route = make_route(path or ("/mcp" if kind == "mcp" else "/api"), url, kind=kind, **policy.pop("route_fields", {}))
    ResponseCachePolicy.objects.create(route=route, **policy)
    return route


def rpc(client: Any, method: str, params: dict[str, Any] | None = None, *, request_id: Any = 1, path: str = "/mcp", **headers: str) -> Any:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return client.post(path, json.dumps(message), content_type="application/json", headers=headers)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def result_of(response: Any) -> dict[str, Any]:
    document = json.loads(response.content)
    assert "error" not in document, document
    result: dict[str, Any] = document["result"]
    return result


# --- where the stages run ----------------------------------------------------------------------


def test_lookup_is_the_last_request_stage_and_storing_the_last_response_stage() -> None:
    """After every check (a hit is served only to a request that would be let through) and after
    every answer rewrite (what is stored is what the client gets)."""
    assert pipeline.REQUEST_STAGES[-1] is serve_from_cache
    assert pipeline.RESPONSE_STAGES[-1] is store_in_cache


# --- HTTP routes -------------------------------------------------------------------------------


def test_two_identical_gets_reach_the_upstream_once(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    cached_route(make_route, upstream.url)
    first = client.get("/api/echo?page=1")
    second = client.get("/api/echo?page=1")
    assert (first.status_code, first[X_CACHE_HEADER]) == (200, MISS)
    assert (second.status_code, second[X_CACHE_HEADER]) == (200, HIT)
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"] == "application/json"
    assert second["X-Upstream"] == "test"  # the upstream's own headers come with the hit
    assert len(upstream.requests) == 1


def test_the_query_string_is_part_of_the_key(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    cached_route(make_route, upstream.url)
    client.get("/api/echo?page=1")
    assert client.get("/api/echo?page=2")[X_CACHE_HEADER] == MISS
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("enabled", [None, False], ids=["no policy", "disabled policy"])
def test_a_get_is_cached_only_on_a_route_that_opts_in(
    client: Any, make_route: Any, upstream: UpstreamServer, enabled: bool | None
) -> None:
    route = make_route("/api", upstream.url)
    if enabled is not None:
        ResponseCachePolicy.objects.create(route=route, enabled=enabled)
    responses = [client.get("/api/echo"), client.get("/api/echo")]
    assert [r.status_code for r in responses] == [200, 200]
    assert all(not r.has_header(X_CACHE_HEADER) for r in responses)
    assert len(upstream.requests) == 2


def test_a_policy_saved_later_applies_to_the_next_request(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    """Policies are read from the in-process copy, rebuilt on every config change."""
    route = make_route("/api", scripted.url)
    assert not client.get("/api/doc").has_header(X_CACHE_HEADER)
    policy = ResponseCachePolicy.objects.create(route=route)
    assert client.get("/api/doc")[X_CACHE_HEADER] == MISS
    assert client.get("/api/doc")[X_CACHE_HEADER] == HIT
    policy.enabled = False
    policy.save()
    assert not client.get("/api/doc").has_header(X_CACHE_HEADER)
    assert len(scripted.requests) == 3


def test_posts_on_an_http_route_are_never_cached(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    cached_route(make_route, upstream.url)
    for _ in range(2):
        response = client.post("/api/echo", b'{"a": 1}', content_type="application/json")
        assert response.status_code == 200
        assert not response.has_header(X_CACHE_HEADER)
    assert len(upstream.requests) == 2


def test_head_is_cached_apart_from_get(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url)
    assert client.head("/api/doc")[X_CACHE_HEADER] == MISS
    hit = client.head("/api/doc")
    assert hit[X_CACHE_HEADER] == HIT
    assert hit["Content-Length"] == str(len(json.dumps({"served": 1})))  # what a GET would carry
    assert client.get("/api/doc")[X_CACHE_HEADER] == MISS
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("status", [404, 500])
def test_error_statuses_are_not_cached(client: Any, make_route: Any, upstream: UpstreamServer, status: int) -> None:
    cached_route(make_route, upstream.url)
    responses = [client.get(f"/api/status/{status}") for _ in range(2)]
    assert [r.status_code for r in responses] == [status, status]
    assert [r[X_CACHE_HEADER] for r in responses] == [MISS, MISS]
    assert len(upstream.requests) == 2


def test_event_streams_are_not_cached(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    cached_route(make_route, upstream.url)
    for _ in range(2):
        response = client.get("/api/sse?events=1&delay=0")
        assert b"".join(response.streaming_content).startswith(b"id: 1\n")
        assert response[X_CACHE_HEADER] == MISS
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache-Control": "no-store"},
        {"Cache-Control": "no-cache"},
        {"Cache-Control": "private, max-age=600"},
        {"Cache-Control": "max-age=60"},  # shorter than the 5-minute minimum
        {"Cache-Control": "max-age=soon"},
        {"Set-Cookie": "session=abc"},
        {"Vary": "Cookie"},
        {"Vary": "*"},
        {"Content-Encoding": "gzip"},
    ],
)
def test_http_answers_whose_headers_forbid_a_shared_cache_are_not_cached(
    client: Any, make_route: Any, scripted: ScriptedUpstream, headers: dict[str, str]
) -> None:
    cached_route(make_route, scripted.url)
    scripted.extra_headers = headers
    assert [client.get("/api/doc")[X_CACHE_HEADER] for _ in range(2)] == [MISS, MISS]
    assert len(scripted.requests) == 2


def test_http_max_age_shortens_the_entry(client: Any, make_route: Any, scripted: ScriptedUpstream, clock: FakeClock) -> None:
    cached_route(make_route, scripted.url, ttl_seconds=3600)
    scripted.extra_headers = {"Cache-Control": "public, max-age=600", "Vary": "Accept"}
    client.get("/api/doc")
    clock.advance(599)
    hit = client.get("/api/doc")
    assert (hit[X_CACHE_HEADER], hit[AGE_HEADER], hit["Cache-Control"]) == (HIT, "599", "public, max-age=600")
    clock.advance(2)
    assert client.get("/api/doc")[X_CACHE_HEADER] == MISS


def test_an_entry_expires_after_the_policys_ttl(client: Any, make_route: Any, scripted: ScriptedUpstream, clock: FakeClock) -> None:
    cached_route(make_route, scripted.url, ttl_seconds=300)
    client.get("/api/doc")
    clock.advance(299)
    assert client.get("/api/doc")[X_CACHE_HEADER] == HIT
    clock.advance(2)
    assert client.get("/api/doc")[X_CACHE_HEADER] == MISS
    assert len(scripted.requests) == 2


# --- MCP routes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/list", None),
        ("tools/list", {"cursor": "page-2"}),
        ("resources/list", {}),
        ("resources/read", {"uri": "file:///readme"}),
        ("prompts/list", {}),
        ("prompts/get", {"name": "greet", "arguments": {"who": "you"}}),
    ],
)
def test_read_only_mcp_methods_reach_the_upstream_once(
    client: Any, make_route: Any, scripted: ScriptedUpstream, method: str, params: dict[str, Any] | None
) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    first = rpc(client, method, params, request_id=1)
    second = rpc(client, method, params, request_id=2)
    assert (first[X_CACHE_HEADER], second[X_CACHE_HEADER]) == (MISS, HIT)
    assert result_of(second) == result_of(first) == {"served": 1, "method": method}
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("method", ["ping", "completion/complete", "resources/subscribe", "logging/setLevel"])
def test_other_mcp_methods_are_never_cached(client: Any, make_route: Any, scripted: ScriptedUpstream, method: str) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    params = {"uri": "file:///readme"} if method == "resources/subscribe" else {}
    responses = [rpc(client, method, params) for _ in range(2)]
    assert all(not r.has_header(X_CACHE_HEADER) for r in responses)
    assert [result_of(r)["served"] for r in responses] == [1, 2]


def test_a_hit_carries_the_current_requests_id(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    rpc(client, "tools/list", request_id=1)
    hit = rpc(client, "tools/list", request_id="second-call")
    document = json.loads(hit.content)
    assert hit[X_CACHE_HEADER] == HIT
    assert document == {"jsonrpc": "2.0", "id": "second-call", "result": {"served": 1, "method": "tools/list"}}
    assert hit["Content-Length"] == str(len(hit.content))
    assert hit["Content-Type"] == "application/json"


def test_tools_call_is_cached_only_for_tools_marked_cacheable(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp", cacheable_tools=["search"])
    search = {"name": "search", "arguments": {"q": "cats"}}
    assert [rpc(client, "tools/call", search, request_id=n)[X_CACHE_HEADER] for n in (1, 2)] == [MISS, HIT]
    other_arguments = {"name": "search", "arguments": {"q": "dogs"}}
    assert rpc(client, "tools/call", other_arguments)[X_CACHE_HEADER] == MISS
    uncached = [rpc(client, "tools/call", {"name": "send_mail", "arguments": {}}) for _ in range(2)]
    assert all(not r.has_header(X_CACHE_HEADER) for r in uncached)
    assert len(scripted.requests) == 4


def test_the_protocol_version_is_part_of_the_key(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    modern = {"MCP-Protocol-Version": MODERN_VERSION}
    legacy = {"MCP-Protocol-Version": "2025-06-18"}
    assert rpc(client, "tools/list", **modern)[X_CACHE_HEADER] == MISS
    assert rpc(client, "tools/list", **legacy)[X_CACHE_HEADER] == MISS
    assert rpc(client, "tools/list", **modern)[X_CACHE_HEADER] == HIT
    assert len(scripted.requests) == 2


def test_jsonrpc_error_answers_are_not_cached(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp", cacheable_tools=["broken"])
    responses = [rpc(client, "tools/call", {"name": "broken", "arguments": {}}, request_id=n) for n in (1, 2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert [json.loads(r.content)["error"]["code"] for r in responses] == [-32000, -32000]
    assert [r[X_CACHE_HEADER] for r in responses] == [MISS, MISS]
    assert len(scripted.requests) == 2


def test_an_mcp_answer_with_an_error_status_is_not_cached(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    scripted.status = 500
    assert [rpc(client, "tools/list").status_code for _ in range(2)] == [500, 500]
    assert len(scripted.requests) == 2


def test_mcp_event_stream_answers_are_not_cached(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    scripted.as_event_stream = True
    for _ in range(2):
        response = rpc(client, "tools/list")
        assert b"".join(response.streaming_content).startswith(b"event: message\n")
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("ttl_ms", [299_999, 0, -5, "soon", None], ids=["under 5 min", "zero", "negative", "text", "null"])
def test_a_ttl_hint_under_5_minutes_or_unreadable_is_not_cached(
    client: Any, make_route: Any, scripted: ScriptedUpstream, ttl_ms: Any
) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    scripted.hints = {"ttlMs": ttl_ms, "cacheScope": "public"}
    assert [rpc(client, "tools/list")[X_CACHE_HEADER] for _ in range(2)] == [MISS, MISS]
    assert len(scripted.requests) == 2


def test_a_ttl_hint_shortens_the_entry_and_a_hit_reports_the_time_left(
    client: Any, make_route: Any, scripted: ScriptedUpstream, clock: FakeClock
) -> None:
    cached_route(make_route, scripted.url, kind="mcp", ttl_seconds=3600)
    scripted.hints = {"ttlMs": TEN_MINUTES_MS, "cacheScope": "public"}
    assert result_of(rpc(client, "tools/list"))["ttlMs"] == TEN_MINUTES_MS
    clock.advance(100)
    hit = rpc(client, "tools/list")
    assert hit[X_CACHE_HEADER] == HIT
    assert hit[AGE_HEADER] == "100"
    assert result_of(hit) == {"ttlMs": TEN_MINUTES_MS - 100_000, "served": 1, "method": "tools/list", "cacheScope": "public"}
    clock.advance(501)  # 601 s: past the hint, long before the policy's hour
    assert rpc(client, "tools/list")[X_CACHE_HEADER] == MISS


def test_interim_and_multi_round_trip_results_are_not_cached(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url, kind="mcp")
    scripted.result_extra = {"resultType": "input_required"}
    assert [rpc(client, "resources/list")[X_CACHE_HEADER] for _ in range(2)] == [MISS, MISS]
    scripted.result_extra = {}
    retried = {"requestState": "opaque"}
    assert [rpc(client, "resources/list", retried).has_header(X_CACHE_HEADER) for _ in range(2)] == [False, False]
    assert len(scripted.requests) == 4


# --- principals: grants and private answers ----------------------------------------------------


@pytest.fixture
def closed_mcp(make_route: Any, scripted: ScriptedUpstream) -> Route:
    """An MCP route that needs a credential."""
    return cached_route(make_route, scripted.url, kind="mcp", route_fields={"allow_anonymous": False})


def test_two_api_keys_with_different_grants_never_share_a_cached_answer(
    client: Any, closed_mcp: Route, scripted: ScriptedUpstream
) -> None:
    _, narrow = issue_api_key(name="narrow", permissions=["tool:*:add"])
    _, broad = issue_api_key(name="broad", permissions=["tool:*:*"])
    assert rpc(client, "tools/list", **bearer(narrow))[X_CACHE_HEADER] == MISS
    broad_answer = rpc(client, "tools/list", **bearer(broad))
    assert broad_answer[X_CACHE_HEADER] == MISS
    assert result_of(broad_answer)["served"] == 2
    assert rpc(client, "tools/list", **bearer(narrow))[X_CACHE_HEADER] == HIT
    assert rpc(client, "tools/list", **bearer(broad))[X_CACHE_HEADER] == HIT
    assert len(scripted.requests) == 2


def test_two_api_keys_with_the_same_grants_share_a_public_answer(client: Any, closed_mcp: Route, scripted: ScriptedUpstream) -> None:
    _, alice = issue_api_key(name="alice", permissions=["tool:*:add"])
    _, bob = issue_api_key(name="bob", permissions=["tool:*:add"])
    scripted.hints = {"ttlMs": TEN_MINUTES_MS, "cacheScope": "public"}
    assert rpc(client, "tools/list", **bearer(alice))[X_CACHE_HEADER] == MISS
    assert rpc(client, "tools/list", **bearer(bob))[X_CACHE_HEADER] == HIT
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("scope", ["private", "per-tenant"], ids=["private", "unknown scope"])
def test_a_private_answer_is_served_only_to_the_same_principal(
    client: Any, closed_mcp: Route, scripted: ScriptedUpstream, scope: str
) -> None:
    _, alice = issue_api_key(name="alice", permissions=["tool:*:add"])
    _, bob = issue_api_key(name="bob", permissions=["tool:*:add"])  # same grants: only the principal differs
    scripted.hints = {"ttlMs": TEN_MINUTES_MS, "cacheScope": scope}
    assert rpc(client, "resources/list", {}, **bearer(alice))[X_CACHE_HEADER] == MISS
    bobs = rpc(client, "resources/list", {}, **bearer(bob))
    assert (bobs[X_CACHE_HEADER], result_of(bobs)["served"]) == (MISS, 2)
    alices = rpc(client, "resources/list", {}, **bearer(alice))
    assert (alices[X_CACHE_HEADER], result_of(alices)["served"]) == (HIT, 1)
    assert result_of(rpc(client, "resources/list", {}, **bearer(bob)))["served"] == 2
    assert len(scripted.requests) == 2


def test_a_private_answer_to_anonymous_callers_is_not_cached(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    """Anonymous callers are not one principal: there is no "same" caller to serve it to."""
    cached_route(make_route, scripted.url, kind="mcp")
    scripted.hints = {"ttlMs": TEN_MINUTES_MS, "cacheScope": "private"}
    assert [rpc(client, "tools/list")[X_CACHE_HEADER] for _ in range(2)] == [MISS, MISS]
    assert len(scripted.requests) == 2


def test_a_hit_makes_no_database_queries(
    client: Any, closed_mcp: Route, scripted: ScriptedUpstream, django_assert_num_queries: Any
) -> None:
    _, key = issue_api_key(name="alice", permissions=["tool:*:add"])
    rpc(client, "tools/list", **bearer(key))  # warms the snapshot, the policies and the key cache
    with django_assert_num_queries(0):
        assert rpc(client, "tools/list", **bearer(key))[X_CACHE_HEADER] == HIT


# --- purge, cleanup, statistics, Redis down -------------------------------------------------------


def test_purge_removes_one_routes_answers_only(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    route = cached_route(make_route, scripted.url, path="/one")
    cached_route(make_route, scripted.url, path="/two")
    client.get("/one/doc")
    client.get("/two/doc")
    assert purge_route(route.id) == 1
    assert client.get("/one/doc")[X_CACHE_HEADER] == MISS
    assert client.get("/two/doc")[X_CACHE_HEADER] == HIT


def test_statistics_count_hits_misses_evictions_and_size(client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    cached_route(make_route, scripted.url)
    assert cache_stats() == {"hits": 0, "misses": 0, "evictions": 0, "size": 0, "hit_rate": 0.0, "miss_rate": 0.0}
    with override_settings(GATEWAY_CACHE_MAX_ENTRIES=2):
        for path in ("/api/a", "/api/a", "/api/b", "/api/c", "/api/a"):
            client.get(path)
        stats = cache_stats()
    # a: miss, hit; b: miss; c: miss, evicts a (least recently used); a: miss, evicts b.
    assert stats == {"hits": 1, "misses": 4, "evictions": 2, "size": 2, "hit_rate": 0.2, "miss_rate": 0.8}


def test_the_worker_removes_expired_entries(client: Any, make_route: Any, scripted: ScriptedUpstream, clock: FakeClock) -> None:
    assert "response cache cleanup" in [job.name for job in worker.PERIODIC_JOBS]
    cached_route(make_route, scripted.url, ttl_seconds=300)
    client.get("/api/doc")
    clock.advance(301)
    store = get_cache_store()
    assert isinstance(store, MemoryCacheStore)
    run_cache_cleanup()
    assert store.remove_expired() == 0  # the job already took it
    assert cache_stats()["size"] == 0


def test_the_store_is_redis_exactly_when_the_gateway_shares_state_through_it() -> None:
    with override_settings(REDIS_URL=REDIS_TEST_URL):
        assert get_cache_store().backend_name == "redis"
    with override_settings(REDIS_URL=""):
        assert get_cache_store().backend_name == "memory"


def test_with_redis_down_requests_are_answered_without_the_cache(
    client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    cached_route(make_route, upstream.url)
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        responses = [client.get("/api/echo") for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert all(not r.has_header(X_CACHE_HEADER) for r in responses)
    assert len(upstream.requests) == 2
    assert "response cache degraded" in caplog.text


# --- the policy: validation in the model, the database and the admin ------------------------------


@pytest.mark.parametrize("ttl", [299, 3601, 0])
def test_a_ttl_outside_5_minutes_to_1_hour_is_refused_with_the_allowed_range(make_route: Any, ttl: int) -> None:
    policy = ResponseCachePolicy(route=make_route("/api", "http://127.0.0.1:9"), ttl_seconds=ttl)
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert refused.value.message_dict == {"ttl_seconds": [TTL_RANGE_MESSAGE]}
    assert "300 seconds (5 minutes) and 3600 seconds (1 hour)" in TTL_RANGE_MESSAGE


@pytest.mark.parametrize("ttl", [300, 3600])
def test_a_ttl_at_either_bound_is_accepted(make_route: Any, ttl: int) -> None:
    policy = ResponseCachePolicy(route=make_route("/api", "http://127.0.0.1:9"), ttl_seconds=ttl)
    policy.full_clean()
    policy.save()
    assert ResponseCachePolicy.objects.get().ttl_seconds == ttl


def test_the_default_ttl_is_5_minutes(make_route: Any) -> None:
    assert ResponseCachePolicy.objects.create(route=make_route("/api", "http://127.0.0.1:9")).ttl_seconds == 300


def test_the_database_refuses_a_ttl_saved_around_validation(make_route: Any) -> None:
    route = make_route("/api", "http://127.0.0.1:9")
    with pytest.raises(IntegrityError), transaction.atomic():
        ResponseCachePolicy.objects.create(route=route, ttl_seconds=3601)


@pytest.mark.parametrize("tools", ["search", [""], [1], {"search": True}])
def test_cacheable_tools_must_be_a_list_of_names(make_route: Any, tools: Any) -> None:
    policy = ResponseCachePolicy(route=make_route("/api", "http://127.0.0.1:9"), cacheable_tools=tools)
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert refused.value.message_dict == {"cacheable_tools": [CACHEABLE_TOOLS_MESSAGE]}


@pytest.fixture
def admin_client(client: Any, db: Any) -> Any:
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "correct horse battery"))
    return client


def test_the_admin_refuses_a_ttl_out_of_range_and_accepts_one_within(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://127.0.0.1:9")
    form = {"route": route.pk, "enabled": "on", "ttl_seconds": "299", "cacheable_tools": "[]"}
    refused = admin_client.post(ADD_URL, form)
    assert refused.status_code == 200
    assert TTL_RANGE_MESSAGE in refused.content.decode()
    assert not ResponseCachePolicy.objects.exists()
    assert admin_client.post(ADD_URL, {**form, "ttl_seconds": "900"}).status_code == 302
    assert ResponseCachePolicy.objects.get(route=route).ttl_seconds == 900


def test_the_admin_action_purges_the_selected_routes_answers(admin_client: Any, make_route: Any, scripted: ScriptedUpstream) -> None:
    route = cached_route(make_route, scripted.url)
    admin_client.get("/api/a")
    admin_client.get("/api/b")
    policy = ResponseCachePolicy.objects.get(route=route)
    response = admin_client.post(CHANGELIST_URL, {"action": "purge_cached_answers", "_selected_action": [policy.pk]}, follow=True)
    assert PURGED_MESSAGE.format(count=2, routes=1) in response.content.decode()
    assert admin_client.get("/api/a")[X_CACHE_HEADER] == MISS
