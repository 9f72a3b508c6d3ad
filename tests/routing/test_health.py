"""Active probes, health thresholds and passive ejection, against real servers and real stores."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, cast

import mcp_types
import pytest
import urllib3
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION

from gateway_project.state import get_state_store
from gateway_project.state.degraded import reset_log_throttle
from gateway_project.state.redis_store import RedisStateStore
from routing import health, probes
from routing.balancing import checked_ok_at_key
from routing.health import (
    check_services,
    fails_key,
    passive_failures_key,
    record_passive_failure,
)
from routing.models import ConfigRevision, Service, Target
from routing.probes import DETAIL_DISCOVER_OK, DETAIL_LEGACY_OK, probe_target
from routing.snapshot import ServiceConfig, service_config
from routing.target_status import down_key, ejected_key, unavailable_target_ids
from tests.gateway_project.conftest import CLOSED_REDIS_URL, Backend
from tests.live_servers import PROJECT_DIR, free_port, wait_until_answering
from tests.upstream_server import UpstreamServer

NOW = 1_800_000_000.25  # the round's wall-clock time, as the worker passes it

HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=10.0))


def make_service(urls: list[str] | str, *, kind: str = "http", **fields: Any) -> Service:
    service = Service.objects.create(name=f"s{uuid.uuid4().hex[:8]}", kind=kind, **fields)
    for url in [urls] if isinstance(urls, str) else urls:
        Target.objects.create(service=service, url=url)
    return service


def config_of(service: Service) -> ServiceConfig:
    """The service as the worker sees it: read afresh, targets included."""
    return service_config(Service.objects.prefetch_related("targets").get(pk=service.pk))


def probe(service: Service) -> probes.ProbeResult:
    config = config_of(service)
    return probe_target(config, config.targets[0])


def received(upstream: UpstreamServer) -> list[dict[str, Any]]:
    """What the upstream recorded, typed for reading."""
    return cast(list[dict[str, Any]], upstream.requests)


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --- HTTP path probes --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "ok", "detail"),
    [
        ("/health", True, "HTTP 200"),
        ("/status/302", True, "HTTP 302"),
        ("/status/404", False, "HTTP 404"),
        ("/status/503", False, "HTTP 503"),
    ],
)
def test_path_probe_is_healthy_on_2xx_and_3xx_only(upstream: UpstreamServer, path: str, ok: bool, detail: str) -> None:
    result = probe(make_service(upstream.url + "/base", health_check_path=path))
    assert (result.ok, result.detail) == (ok, detail)
    assert [(r["method"], r["path"]) for r in upstream.requests] == [("GET", "/base" + path)]


@pytest.mark.django_db
def test_path_probe_records_the_response_time_of_a_slow_answer(upstream: UpstreamServer) -> None:
    result = probe(make_service(upstream.url, health_check_path="/slow-headers?seconds=0.25", health_check_timeout=5))
    assert result.ok
    assert 250 <= result.response_time_ms < 5000


@pytest.mark.django_db
def test_path_probe_slower_than_the_timeout_fails_at_the_timeout(upstream: UpstreamServer) -> None:
    result = probe(make_service(upstream.url, health_check_path="/slow-headers?seconds=3", health_check_timeout=0.3))
    assert not result.ok
    assert result.detail == "no answer within 0.3s"
    assert 300 <= result.response_time_ms < 2500  # gave up at the timeout, did not wait for the answer


@pytest.mark.django_db
def test_probe_of_a_closed_port_fails_without_raising() -> None:
    result = probe(make_service(closed_url(), health_check_path="/health"))
    assert not result.ok
    assert result.detail.startswith("cannot connect:") and "Connection refused" in result.detail


@pytest.mark.django_db
def test_probe_of_an_unresolvable_host_fails_without_raising() -> None:
    result = probe(make_service("http://no-such-host.invalid:8080", health_check_path="/health"))
    assert not result.ok
    assert result.detail.startswith("cannot connect:") and "no-such-host.invalid" in result.detail


@pytest.mark.django_db
def test_probe_carries_the_targets_own_upstream_credential(upstream: UpstreamServer) -> None:
    service = make_service(upstream.url, health_check_path="/health")
    Target.objects.filter(service=service).update(upstream_auth_header="X-Api-Key", upstream_auth_value="s3cret")
    assert probe(service).ok
    assert received(upstream)[0]["headers"]["X-Api-Key"] == "s3cret"


@pytest.mark.django_db
@pytest.mark.parametrize(("base", "ok"), [("/status/404", True), ("/status/401", True), ("/status/503", False)])
def test_http_service_without_a_path_is_alive_on_any_answer_below_500(upstream: UpstreamServer, base: str, ok: bool) -> None:
    result = probe(make_service(upstream.url + base, kind="http"))
    assert result.ok is ok
    assert [(r["method"], r["path"]) for r in upstream.requests] == [("GET", base)]


# --- MCP probes --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_mcp_probe_of_the_demo_server_succeeds_with_server_discover(demo_server_port: int) -> None:
    result = probe(make_service(f"http://127.0.0.1:{demo_server_port}/mcp", kind="mcp"))
    assert (result.ok, result.detail) == (True, DETAIL_DISCOVER_OK)
    assert result.response_time_ms > 0


def test_probe_meta_keys_are_the_sdks() -> None:
    assert probes.PROTOCOL_VERSION_META_KEY == mcp_types.PROTOCOL_VERSION_META_KEY
    assert probes.CLIENT_INFO_META_KEY == mcp_types.CLIENT_INFO_META_KEY
    assert probes.CLIENT_CAPABILITIES_META_KEY == mcp_types.CLIENT_CAPABILITIES_META_KEY
    assert probes.MODERN_PROTOCOL_VERSION == LATEST_MODERN_VERSION
    assert probes.LEGACY_PROTOCOL_VERSION in HANDSHAKE_PROTOCOL_VERSIONS


@pytest.mark.django_db
def test_mcp_probe_sends_a_modern_discover_and_fails_on_a_non_json_rpc_answer(upstream: UpstreamServer) -> None:
    """The upstream answers 200 with plain JSON: neither a result nor a refusal, so no fallback."""
    result = probe(make_service(upstream.url + "/mcp", kind="mcp"))
    assert (result.ok, result.detail) == (False, "server/discover: HTTP 200, no JSON-RPC answer")
    [request] = received(upstream)
    headers = request["headers"]
    assert (request["method"], request["path"]) == ("POST", "/mcp")
    assert headers["MCP-Protocol-Version"] == "2026-07-28"
    assert headers["Mcp-Method"] == "server/discover"
    assert headers["Accept"] == "application/json, text/event-stream"
    assert headers["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert (body["jsonrpc"], body["method"]) == ("2.0", "server/discover")
    meta = body["params"]["_meta"]
    assert meta[mcp_types.PROTOCOL_VERSION_META_KEY] == "2026-07-28"
    assert meta[mcp_types.CLIENT_CAPABILITIES_META_KEY] == {}
    assert meta[mcp_types.CLIENT_INFO_META_KEY]["name"] == probes.PROBE_CLIENT_INFO["name"]


@pytest.mark.django_db
def test_mcp_probe_does_not_fall_back_to_legacy_on_a_5xx(upstream: UpstreamServer) -> None:
    result = probe(make_service(upstream.url + "/status/503", kind="mcp"))
    assert not result.ok
    assert result.detail == "server/discover: HTTP 503, JSON-RPC error -32001: upstream said 503"
    assert [json.loads(r["body"])["method"] for r in received(upstream)] == ["server/discover"]


@pytest.fixture(scope="module")
def legacy_server_port() -> Iterator[int]:
    """The real SDK server behind a filter that refuses the modern era (tests/routing/legacy_mcp_server.py)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.routing.legacy_mcp_server", "--port", str(port)], cwd=PROJECT_DIR)
    wait_until_answering(f"http://127.0.0.1:{port}/calls", process)
    yield port
    process.terminate()
    process.wait(timeout=10)


def legacy_calls(port: int, era: str) -> dict[str, Any]:
    calls: dict[str, Any] = json.loads(HTTP.request("GET", f"http://127.0.0.1:{port}/calls").data)
    return calls.get(era, {"methods": [], "deletes": 0, "sessions_opened": [], "sessions_ended": []})


@pytest.mark.django_db
@pytest.mark.parametrize("era", ["session-era", "version-era"])
def test_legacy_only_server_gets_initialize_ping_and_its_session_deleted(legacy_server_port: int, era: str) -> None:
    before = legacy_calls(legacy_server_port, era)
    result = probe(make_service(f"http://127.0.0.1:{legacy_server_port}/{era}/mcp", kind="mcp"))
    after = legacy_calls(legacy_server_port, era)

    assert (result.ok, result.detail) == (True, DETAIL_LEGACY_OK)
    new_methods = after["methods"][len(before["methods"]) :]
    assert new_methods == ["server/discover", "initialize", "notifications/initialized", "ping"]
    assert after["deletes"] - before["deletes"] == 1
    [opened] = after["sessions_opened"][len(before["sessions_opened"]) :]
    assert after["sessions_ended"][len(before["sessions_ended"]) :] == [opened]
    # The SDK itself forgot the session: using it again is a 404.
    ping = HTTP.request(
        "POST",
        f"http://127.0.0.1:{legacy_server_port}/{era}/mcp",
        body=json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Mcp-Session-Id": opened,
            "MCP-Protocol-Version": "2025-06-18",
        },
    )
    assert ping.status == 404


@pytest.mark.django_db
def test_a_legacy_handshake_failing_midway_fails_the_probe_and_still_deletes_its_session(upstream: UpstreamServer) -> None:
    """The upstream refuses discover (404), opens a session on initialize, then 404s the rest."""
    result = probe(make_service(upstream.url + "/status/404", kind="mcp"))
    assert (result.ok, result.detail) == (False, "notifications/initialized: HTTP 404")
    steps = [(r["method"], json.loads(r["body"])["method"] if r["body"] else None) for r in received(upstream)]
    assert steps == [
        ("POST", "server/discover"),
        ("POST", "initialize"),
        ("POST", "notifications/initialized"),
        ("DELETE", None),
    ]
    session_headers = [r["headers"].get("Mcp-Session-Id") for r in received(upstream)]
    assert session_headers[0] is None and session_headers[1] is None
    assert session_headers[2] == session_headers[3] and str(session_headers[3]).startswith("session-")


# --- thresholds --------------------------------------------------------------------------------


def check(service: Service) -> health.HealthCheckOutcome:
    [outcome] = check_services([config_of(service)], now=NOW, store=get_state_store())
    return outcome


def row(service: Service) -> Target:
    return Target.objects.get(service=service)


def unavailable(service: Service) -> bool:
    target_id = row(service).pk
    return unavailable_target_ids([target_id]) == {target_id}


@pytest.mark.django_db
def test_target_turns_unhealthy_only_after_the_unhealthy_threshold_in_a_row() -> None:
    service = make_service(closed_url(), health_check_path="/health", unhealthy_threshold=3)
    for _ in range(2):
        outcome = check(service)
        assert (outcome.result.ok, outcome.healthy, outcome.changed) == (False, True, False)
        assert row(service).healthy and not unavailable(service)
    outcome = check(service)
    assert (outcome.healthy, outcome.changed) == (False, True)
    assert not row(service).healthy
    assert unavailable(service)
    assert get_state_store().get(down_key(row(service).pk)) is not None
    assert get_state_store().get(checked_ok_at_key(row(service).pk)) is None  # never seen healthy


@pytest.mark.django_db
def test_a_success_breaks_a_failure_streak(upstream: UpstreamServer) -> None:
    service = make_service(upstream.url, health_check_path="/status/503", unhealthy_threshold=2)
    check(service)
    Service.objects.filter(pk=service.pk).update(health_check_path="/health")
    assert check(service).result.ok
    Service.objects.filter(pk=service.pk).update(health_check_path="/status/503")
    outcome = check(service)
    assert (outcome.healthy, outcome.changed) == (True, False)  # 1 failure since the success, not 2
    assert get_state_store().get(fails_key(row(service).pk)) == "1"


@pytest.mark.django_db
def test_target_turns_healthy_again_only_after_the_healthy_threshold(upstream: UpstreamServer) -> None:
    service = make_service(upstream.url, health_check_path="/status/503", unhealthy_threshold=1, healthy_threshold=2)
    assert check(service).changed and unavailable(service)
    assert row(service).response_time_ms is None  # no answer worth timing

    Service.objects.filter(pk=service.pk).update(health_check_path="/health")
    outcome = check(service)
    assert (outcome.result.ok, outcome.healthy, outcome.changed) == (True, False, False)
    assert not row(service).healthy and unavailable(service)

    outcome = check(service)
    assert (outcome.healthy, outcome.changed) == (True, True)
    target = row(service)
    assert target.healthy and not unavailable(service)
    assert target.response_time_ms == outcome.result.response_time_ms and target.response_time_ms > 0
    assert target.last_health_check == datetime.fromtimestamp(NOW, tz=timezone.utc)
    assert float(get_state_store().get(checked_ok_at_key(target.pk)) or 0) == NOW  # for health_based balancing


@pytest.mark.django_db
def test_health_writes_do_not_bump_the_config_version(upstream: UpstreamServer) -> None:
    service = make_service(upstream.url, health_check_path="/status/503", unhealthy_threshold=1)
    revision_before = ConfigRevision.objects.get(pk=1).revision
    assert check(service).changed  # a verdict change, so the row really was written
    assert not row(service).healthy
    assert ConfigRevision.objects.get(pk=1).revision == revision_before


@pytest.mark.django_db
def test_a_row_marked_unhealthy_stays_down_when_the_store_lost_its_state(upstream: UpstreamServer) -> None:
    """In-process memory restarts empty; the row's verdict holds until healthy_threshold good checks."""
    service = make_service(upstream.url, health_check_path="/health", healthy_threshold=2)
    Target.objects.filter(service=service).update(healthy=False)
    outcome = check(service)
    assert (outcome.result.ok, outcome.healthy) == (True, False)
    assert unavailable(service)
    assert check(service).healthy and not unavailable(service)


# --- passive checks ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Memory on a fake clock, and real Redis (really waiting, with short ttls)."""
    chosen = Backend(request.param)
    yield chosen
    chosen.cleanup()


def passive_service(backend: Backend, **fields: Any) -> ServiceConfig:
    fields.setdefault("passive_failure_threshold", 3)
    fields.setdefault("passive_ejection_seconds", 30.0 if backend.name == "memory" else 0.5)
    return config_of(make_service("http://10.0.0.1:9000", **fields))


@pytest.mark.django_db
def test_passive_failures_reaching_the_threshold_eject_the_target(backend: Backend) -> None:
    store = backend.make_store()
    service = passive_service(backend)
    target = service.targets[0]
    assert [record_passive_failure(service, target, store) for _ in range(3)] == [False, False, True]
    assert store.get(ejected_key(target.id)) is not None
    ttl = store.ttl(ejected_key(target.id))
    assert ttl is not None and 0 < ttl <= service.passive_ejection_seconds
    assert store.get(passive_failures_key(target.id)) is None  # the count starts over


@pytest.mark.django_db
def test_fewer_passive_failures_than_the_threshold_do_not_eject(backend: Backend) -> None:
    store = backend.make_store()
    service = passive_service(backend)
    target = service.targets[0]
    assert [record_passive_failure(service, target, store) for _ in range(2)] == [False, False]
    assert store.get(ejected_key(target.id)) is None


@pytest.mark.django_db
def test_passive_failures_further_apart_than_the_window_do_not_add_up(backend: Backend) -> None:
    store = backend.make_store()
    service = passive_service(backend)
    target = service.targets[0]
    window = health.PASSIVE_WINDOW_SECONDS if backend.name == "memory" else 0.3
    for _ in range(2):
        record_passive_failure(service, target, store, window_seconds=window)
    assert backend.wait_until_gone(store, passive_failures_key(target.id), window)
    assert not record_passive_failure(service, target, store, window_seconds=window)
    assert store.get(ejected_key(target.id)) is None


@pytest.mark.django_db
def test_ejection_ends_after_the_cool_down(backend: Backend) -> None:
    store = backend.make_store()
    service = passive_service(backend)
    target = service.targets[0]
    for _ in range(3):
        record_passive_failure(service, target, store)
    assert store.get(ejected_key(target.id)) is not None
    assert backend.wait_until_gone(store, ejected_key(target.id), service.passive_ejection_seconds)


@pytest.mark.django_db
def test_failures_of_requests_in_flight_do_not_extend_an_ejection(backend: Backend) -> None:
    store = backend.make_store()
    service = passive_service(backend, passive_ejection_seconds=30.0)
    target = service.targets[0]
    for _ in range(3):
        record_passive_failure(service, target, store)
    backend.let_time_pass(10.0 if backend.name == "memory" else 0.2)
    assert [record_passive_failure(service, target, store) for _ in range(3)] == [False, False, False]
    ttl = store.ttl(ejected_key(target.id))
    assert ttl is not None and ttl < 29.9


@pytest.mark.django_db
def test_passive_ejection_makes_the_target_unavailable_to_the_balancer() -> None:
    service = config_of(make_service("http://10.0.0.1:9000", passive_failure_threshold=1))
    target = service.targets[0]
    assert unavailable_target_ids([target.id]) == set()
    assert record_passive_failure(service, target)
    assert unavailable_target_ids([target.id]) == {target.id}


@pytest.mark.django_db
def test_passive_failure_with_an_unreachable_store_is_lost_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    reset_log_throttle()
    service = config_of(make_service("http://10.0.0.1:9000", passive_failure_threshold=1))
    store = RedisStateStore(CLOSED_REDIS_URL, prefix="gwtest:closed:")
    assert record_passive_failure(service, service.targets[0], store) is False
    assert record_passive_failure(service, service.targets[0], store) is False
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.state"]
    assert len(warnings) == 1  # throttled: an outage must not flood the log from the hot path
    assert "passive health checks degraded" in warnings[0]
