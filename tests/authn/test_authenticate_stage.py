"""The authenticate stage on the real request path (Django test client, real upstream): who a key
makes the caller, every 401 with its exact shape, per-key limits, usage, zero queries warm, and
the key never forwarded, logged or stored in clear."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from authn.stages import (
    CONFLICTING_CREDENTIALS,
    DISABLED_KEY,
    EXPIRED_KEY,
    MALFORMED_KEY,
    MALFORMED_BEARER,
    OWNER_INACTIVE_KEY,
    REVOKED_KEY,
    UNKNOWN_KEY,
    UNSUPPORTED_SCHEME,
    authenticate,
)
from authn.errors import WWW_AUTHENTICATE_HEADER, challenge
from authn.tokens import BAD_SIGNATURE
from gateway_project import pipeline
from gateway_project.errors import JSONRPC_CONTENT_TYPE, JSONRPC_SERVER_ERROR, PROBLEM_CONTENT_TYPE
from gateway_project.exchange import Exchange
from routing import stages as routing_stages
from security.api_keys import (
    enforce_api_key_limits,
    flush_usage,
    generate_key,
    issue_api_key,
    latency_key,
    permissions_for,
    requests_key,
    revoke_api_key,
    rotate_api_key,
)
from security.models import ApiKey
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
from tests.gateway_project.conftest import FakeClock
from tests.upstream_server import UpstreamServer


def expected_challenge(detail: str) -> str:
    metadata = "http://127.0.0.1:8000/.well-known/oauth-protected-resource"
    expected = f'Bearer realm="mcp-gateway", resource_metadata="{metadata}", error="invalid_token", error_description="{detail}"'
    assert challenge(detail) == expected
    return expected


@pytest.fixture(autouse=True)
def authentication_in_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the lead wires the stages: authenticate right after find_route, the per-key limits
    right after the policy limits."""
    stages = list(pipeline.REQUEST_STAGES)
    if authenticate not in stages:  # once wired in pipeline.py, these tests run on the real list
        stages.insert(stages.index(routing_stages.find_route) + 1, authenticate)
    if enforce_api_key_limits not in stages:
        stages.insert(stages.index(enforce_rate_limits) + 1, enforce_api_key_limits)
    monkeypatch.setattr(pipeline, "REQUEST_STAGES", tuple(stages))


@pytest.fixture(autouse=True)
def no_default_ip_limit() -> Iterator[None]:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


@pytest.fixture
def api(make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    make_route("/api", upstream.url)
    return upstream


@pytest.fixture
def mcp(make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    make_route("/mcp", f"{upstream.url}/echo", kind="mcp")
    return upstream


@pytest.fixture
def alice(db: Any) -> User:
    return User.objects.create_user("alice", password="correct horse battery")


@pytest.fixture
def alice_key(alice: User) -> tuple[ApiKey, str]:
    """A working key owned by alice, with permissions."""
    return issue_api_key(name="alice laptop", owner=alice, permissions=["tool:demo:add", "route:demo"])


def echoed_headers(response: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in json.loads(response.content)["headers"].items()}


# --- accepted keys -----------------------------------------------------------------------------


def test_stage_runs_right_after_route_matching_and_before_the_origin_check() -> None:
    stages = pipeline.REQUEST_STAGES
    assert stages.index(authenticate) == stages.index(routing_stages.find_route) + 1
    assert stages.index(enforce_api_key_limits) == stages.index(enforce_rate_limits) + 1


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_valid_key_is_accepted_in_either_header_and_never_forwarded(
    client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str], header: str
) -> None:
    _, key = alice_key
    value = f"Bearer {key}" if header == "Authorization" else key
    response = client.get("/api/echo", headers={header: value})
    assert response.status_code == 200
    forwarded = echoed_headers(response)
    assert "authorization" not in forwarded and "x-api-key" not in forwarded
    assert key not in response.content.decode() and key[4:] not in json.dumps(upstream_requests(api))


def upstream_requests(upstream: UpstreamServer) -> list[Any]:
    return [repr(request) for request in upstream.requests]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str], scheme: str) -> None:
    assert client.get("/api/echo", headers={"Authorization": f"{scheme} {alice_key[1]}"}).status_code == 200


def test_a_valid_key_names_the_key_as_principal_and_exposes_its_permissions(alice_key: tuple[ApiKey, str], rf: Any) -> None:
    api_key, key = alice_key
    exchange = Exchange(request=rf.get("/api/echo", headers={"X-API-Key": key}))
    assert authenticate(exchange) is None
    assert (exchange.principal_id, exchange.api_key_id) == (f"key:{api_key.pk}", str(api_key.pk))
    assert permissions_for(exchange.api_key_id) == frozenset({"tool:demo:add", "route:demo"})
    assert len(exchange.on_finish) == 1


def test_no_credential_on_an_open_route_continues_as_anonymous(client: Any, api: UpstreamServer) -> None:
    assert client.get("/api/echo").status_code == 200
    assert len(api.requests) == 1


def test_no_credential_on_a_closed_route_gets_401(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/closed", upstream.url, allow_anonymous=False)
    response = client.get("/closed/echo")
    assert response.status_code == 401 and json.loads(response.content)["type"] == "urn:mcp-gateway:error:credential_required"
    assert upstream.requests == []


def test_the_same_key_in_both_headers_is_accepted(client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str]) -> None:
    _, key = alice_key
    assert client.get("/api/echo", headers={"Authorization": f"Bearer {key}", "X-API-Key": key}).status_code == 200


# --- refusals ----------------------------------------------------------------------------------


def make_refused_key(state: str, owner: User) -> str:
    """A key in ``state``, or a credential string that is refused for that reason."""
    if state == "unknown":
        return generate_key()
    if state == "tampered":
        _, key = issue_api_key(name="real", owner=owner)
        return key[:-1] + ("A" if key[-1] != "A" else "B")  # right prefix, wrong secret
    if state == "malformed":
        return "mgw_too-short"
    api_key, key = issue_api_key(name=state, owner=owner)
    if state == "expired":
        api_key.expires_at = timezone.now() - timedelta(seconds=1)
        api_key.save()
    elif state == "disabled":
        api_key.enabled = False
        api_key.save()
    elif state == "revoked":
        revoke_api_key(api_key)
    elif state == "owner inactive":
        owner.is_active = False
        owner.save()
    return key


REFUSALS = [
    ("unknown", UNKNOWN_KEY),
    ("tampered", UNKNOWN_KEY),
    ("malformed", MALFORMED_KEY),
    ("expired", EXPIRED_KEY),
    ("disabled", DISABLED_KEY),
    ("revoked", REVOKED_KEY),
    ("owner inactive", OWNER_INACTIVE_KEY),
]


@pytest.mark.parametrize(("state", "detail"), REFUSALS)
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_refused_key_on_an_http_route_gets_401_problem_json_with_a_challenge(
    client: Any, api: UpstreamServer, alice: User, state: str, detail: str, header: str
) -> None:
    key = make_refused_key(state, alice)
    value = f"Bearer {key}" if header == "Authorization" else key
    response = client.get("/api/echo", headers={header: value})
    assert response.status_code == 401
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert response[WWW_AUTHENTICATE_HEADER] == expected_challenge(detail)
    assert json.loads(response.content) == {
        "type": "urn:mcp-gateway:error:invalid_credentials",
        "title": "Invalid credentials",
        "status": 401,
        "detail": detail,
        "instance": "/api/echo",
    }
    assert api.requests == []


@pytest.mark.parametrize(("state", "detail"), REFUSALS)
def test_refused_key_on_an_mcp_route_gets_a_jsonrpc_error_with_the_request_id(
    client: Any, mcp: UpstreamServer, alice: User, state: str, detail: str
) -> None:
    key = make_refused_key(state, alice)
    message = {"jsonrpc": "2.0", "id": 77, "method": "tools/list"}
    response = client.post("/mcp", json.dumps(message), content_type="application/json", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    assert response[WWW_AUTHENTICATE_HEADER] == expected_challenge(detail)
    assert json.loads(response.content) == {
        "jsonrpc": "2.0",
        "id": 77,
        "error": {"code": JSONRPC_SERVER_ERROR, "message": detail, "data": {"status": 401, "type": "invalid_credentials"}},
    }
    assert mcp.requests == []


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        # Shaped like a JWT, so verified as one: the signature is not the gateway's.
        ({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}, BAD_SIGNATURE),
        ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, UNSUPPORTED_SCHEME),
        ({"Authorization": "Bearer"}, MALFORMED_BEARER),
        ({"Authorization": "Bearer not-a-key"}, MALFORMED_BEARER),
        # Only a Bearer token may be a JWT.
        ({"X-API-Key": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}, MALFORMED_KEY),
        ({"X-API-Key": ""}, MALFORMED_KEY),
        ({"X-API-Key": "not-a-key"}, MALFORMED_KEY),
    ],
)
def test_credentials_that_are_neither_keys_nor_valid_tokens_get_401(client: Any, api: UpstreamServer, headers: dict[str, str], detail: str) -> None:
    response = client.get("/api/echo", headers=headers)
    assert response.status_code == 401
    assert response[WWW_AUTHENTICATE_HEADER] == expected_challenge(detail)
    assert json.loads(response.content)["detail"] == detail


def test_two_different_credentials_get_401(client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str]) -> None:
    _, key = alice_key
    response = client.get("/api/echo", headers={"Authorization": f"Bearer {key}", "X-API-Key": generate_key()})
    assert response.status_code == 401
    assert response[WWW_AUTHENTICATE_HEADER] == expected_challenge(CONFLICTING_CREDENTIALS)


def test_rotation_refuses_the_old_key_and_accepts_the_new_one(client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str]) -> None:
    api_key, old = alice_key
    assert client.get("/api/echo", headers={"X-API-Key": old}).status_code == 200
    new = rotate_api_key(api_key)
    assert client.get("/api/echo", headers={"X-API-Key": old}).status_code == 401
    assert client.get("/api/echo", headers={"X-API-Key": new}).status_code == 200


def test_expiry_is_checked_per_request_without_a_config_change(
    client: Any, api: UpstreamServer, alice: User
) -> None:
    api_key, key = issue_api_key(name="short-lived", expires_at=timezone.now() + timedelta(hours=1))
    assert client.get("/api/echo", headers={"X-API-Key": key}).status_code == 200
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))  # no signal
    assert client.get("/api/echo", headers={"X-API-Key": key}).status_code == 200  # cache not rebuilt yet
    api_key.refresh_from_db()
    api_key.save()
    assert client.get("/api/echo", headers={"X-API-Key": key}).status_code == 401


# --- per-key limits ----------------------------------------------------------------------------


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """The shape's own limiter (Redis when REDIS_URL is set) on a fake clock."""
    fake = FakeClock(start=1_700_000_000.0)
    if settings.REDIS_URL:
        limiters.use(RedisRateLimiter(settings.REDIS_URL, prefix=settings.GATEWAY_STATE_PREFIX, clock=fake))
    else:
        limiters.use(MemoryRateLimiter(clock=fake))
    yield fake


def test_a_key_over_its_per_minute_limit_gets_429_with_the_rate_limit_headers(
    client: Any, api: UpstreamServer, alice: User, clock: FakeClock
) -> None:
    _, key = issue_api_key(name="two a minute", per_minute_limit=2, per_day_limit=1000)
    _, other = issue_api_key(name="unlimited")
    first = client.get("/api/echo", headers={"X-API-Key": key})
    clock.advance(10)
    client.get("/api/echo", headers={"X-API-Key": key})
    clock.advance(10)
    refused = client.get("/api/echo", headers={"X-API-Key": key})
    assert (first.status_code, first[LIMIT_HEADER], first[REMAINING_HEADER], first[RESET_HEADER]) == (200, "2", "1", "60")
    assert refused.status_code == 429
    assert refused["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert {name: refused[name] for name in (LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER, RETRY_AFTER_HEADER)} == {
        LIMIT_HEADER: "2", REMAINING_HEADER: "0", RESET_HEADER: "40", RETRY_AFTER_HEADER: "40",
    }
    body = json.loads(refused.content)
    assert (body["type"], body["status"]) == ("urn:mcp-gateway:error:rate_limited", 429)
    assert "per-minute" in body["detail"]
    assert client.get("/api/echo", headers={"X-API-Key": other}).status_code == 200
    assert client.get("/api/echo").status_code == 200  # anonymous: no key, no key limit
    clock.advance(40)
    assert client.get("/api/echo", headers={"X-API-Key": key}).status_code == 200
    assert len(api.requests) == 5


def test_a_key_over_its_limit_on_an_mcp_route_gets_the_jsonrpc_rate_limit_error(
    client: Any, mcp: UpstreamServer, db: Any, clock: FakeClock
) -> None:
    _, key = issue_api_key(name="one a minute", per_minute_limit=1)
    message = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}
    client.post("/mcp", json.dumps(message), content_type="application/json", headers={"X-API-Key": key})
    refused = client.post("/mcp", json.dumps(message), content_type="application/json", headers={"X-API-Key": key})
    assert refused.status_code == 429
    body = json.loads(refused.content)
    assert (body["id"], body["error"]["code"], body["error"]["data"]) == (5, JSONRPC_RATE_LIMITED, {"status": 429, "type": "rate_limited"})


# --- usage, queries, secrecy -------------------------------------------------------------------


def test_usage_is_counted_in_the_state_store_and_flushed_by_the_job(
    client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str], state_store: Any, django_assert_num_queries: Any
) -> None:
    api_key, key = alice_key
    api.delay_seconds = 0.05
    client.get("/api/echo", headers={"X-API-Key": key})  # warm
    with django_assert_num_queries(0):  # counting is never a database write
        for _ in range(2):
            assert client.get("/api/echo", headers={"X-API-Key": key}).status_code == 200
    assert state_store.get(requests_key(api_key.pk)) == "3"
    assert int(state_store.get(latency_key(api_key.pk))) >= 150
    api_key.refresh_from_db()
    assert (api_key.request_count, api_key.last_used_at) == (0, None)
    assert flush_usage() == 1
    api_key.refresh_from_db()
    assert api_key.request_count == 3 and api_key.latency_total_ms >= 150
    assert api_key.average_latency_ms is not None and api_key.average_latency_ms >= 50
    assert api_key.last_used_at is not None and timezone.now() - api_key.last_used_at < timedelta(seconds=30)


def test_warm_request_with_a_valid_key_makes_zero_database_queries(
    client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str], django_assert_num_queries: Any
) -> None:
    _, key = alice_key
    issue_api_key(name="limited", per_minute_limit=100)
    assert client.get("/api/echo", headers={"X-API-Key": key}).status_code == 200  # warms the caches
    with django_assert_num_queries(0):
        assert client.get("/api/echo", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/api/echo", headers={"X-API-Key": generate_key()}).status_code == 401


def test_the_key_is_never_logged(
    client: Any, api: UpstreamServer, alice_key: tuple[ApiKey, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, key = alice_key
    access_log = logging.getLogger("gateway.access")  # does not propagate: capture it directly
    access_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG):
            client.get("/api/echo", headers={"X-API-Key": key})
            client.get("/api/echo", headers={"Authorization": f"Bearer {key}"})
            client.get("/api/echo", headers={"X-API-Key": key[:-1] + "x"})
            client.get("/nowhere", headers={"X-API-Key": key})
    finally:
        access_log.removeHandler(caplog.handler)
    access_lines = [record.getMessage() for record in caplog.records if record.name == "gateway.access"]
    assert len(access_lines) == 4 and "error=invalid_credentials" in access_lines[2]
    assert key[4:] not in caplog.text and key[-20:] not in caplog.text


def test_the_database_holds_only_the_hash_and_the_visible_prefix(alice_key: tuple[ApiKey, str]) -> None:
    api_key, key = alice_key
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table} WHERE id = %s", [api_key.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert api_key.key_prefix == key[4:12] and api_key.key_prefix in row  # the prefix is shown by design
    # No piece of the key longer than the visible prefix is anywhere in the row.
    pieces = {key[start : start + 9] for start in range(len(key) - 8)}
    assert not [piece for piece in pieces if piece in row]
