"""The monitoring REST API: alert rules (CRUD, refused exactly as the admin refuses them), their
events (read-only, filtered, newest first), each rule's state now, and the metrics after a known
mix of requests through the real pipeline; who may read and change them; and the 400s for bad
query parameters, which name the allowed values."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from authn.errors import WWW_AUTHENTICATE_HEADER
from gateway_project.api import CREDENTIAL_REQUIRED, KEY_CANNOT_WRITE
from monitoring.alerts import evaluate_alerts
from monitoring.api import (
    GATEWAY_KEY_ONLY,
    KEY_REQUIRED,
    MINUTES_RANGE,
    UNKNOWN_DIMENSION,
    WINDOW_RANGE,
)
from monitoring.flush import flush_metrics
from monitoring.layout import window_start
from monitoring.models import (
    KEY_REQUIRED_MESSAGE,
    KEY_WITHOUT_DIMENSION_MESSAGE,
    NEGATIVE_THRESHOLD_MESSAGE,
    PERCENT_THRESHOLD_MESSAGE,
    PROCESS_METRIC_SCOPE_MESSAGE,
    TOOL_KEY_MESSAGE,
    WINDOW_RANGE_MESSAGE,
    AlertEvent,
    AlertRule,
)
from monitoring.process import process_name
from tests.api_client import API, ApiClient
from tests.error_assertions import assert_problem
from tests.monitoring.conftest import INTERVAL
from tests.upstream_server import UpstreamServer

pytest_plugins = ["tests.api_personas"]

RULES = f"{API}/alert-rules/"
EVENTS = f"{API}/alert-events/"
ALERTS = f"{API}/alerts/"
METRICS = f"{API}/metrics/"
SERIES = f"{API}/metrics/series/"
PROCESSES = f"{API}/metrics/processes/"
READ_ENDPOINTS = [RULES, EVENTS, ALERTS, METRICS, SERIES, PROCESSES]

SLOW_API = {"name": "slow-api", "metric": "p95_latency_ms", "threshold": 800, "dimension": "route", "key": "api"}


def rule(name: str, metric: str = "error_rate", threshold: float = 5, **fields: Any) -> AlertRule:
    return AlertRule.objects.create(name=name, metric=metric, threshold=threshold, **fields)


def names(answer: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in answer["results"]]


# --- alert rules -----------------------------------------------------------------------------------


def test_staff_create_read_change_and_delete_a_rule(staff_api: ApiClient) -> None:
    created = staff_api.send("post", RULES, {**SLOW_API, "webhook_url": "https://hooks.example/ops"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert {name: body[name] for name in (*SLOW_API, "enabled", "window_seconds")} == {
        **SLOW_API,
        "threshold": 800.0,
        "enabled": True,
        "window_seconds": 300,
    }
    detail = f"{RULES}{body['id']}/"
    assert staff_api.get_json(detail)["webhook_url"] == "https://hooks.example/ops"

    changed = staff_api.send("patch", detail, {"threshold": 1200, "window_seconds": 600})
    assert changed.status_code == 200, changed.content
    stored = AlertRule.objects.get()
    assert (stored.threshold, stored.window_seconds, stored.key) == (1200, 600, "api")

    assert staff_api.send("delete", detail).status_code == 204
    assert not AlertRule.objects.exists()


def test_rules_are_listed_by_name_and_filtered(staff_api: ApiClient) -> None:
    rule("b-errors", dimension="route", key="api")
    rule("a-memory", "memory_mb", 512, enabled=False)
    rule("c-cpu", "cpu_percent", 90)
    assert names(staff_api.get_json(RULES)) == ["a-memory", "b-errors", "c-cpu"]
    assert names(staff_api.get_json(RULES, enabled="false")) == ["a-memory"]
    assert names(staff_api.get_json(RULES, metric="cpu_percent")) == ["c-cpu"]
    assert names(staff_api.get_json(RULES, dimension="route")) == ["b-errors"]


BAD_RULES = [
    # (what the request sends, the errors it gets back: the model's own messages where it has them)
    ({"threshold": "fast"}, {"threshold": ["A valid number is required."]}),
    ({"threshold": -1}, {"threshold": [NEGATIVE_THRESHOLD_MESSAGE]}),
    ({"metric": "latency"}, {"metric": ['"latency" is not a valid choice.']}),
    ({"window_seconds": 30}, {"window_seconds": [WINDOW_RANGE_MESSAGE]}),
    ({"window_seconds": 7200}, {"window_seconds": [WINDOW_RANGE_MESSAGE]}),
    ({"metric": "error_rate", "threshold": 150}, {"threshold": [PERCENT_THRESHOLD_MESSAGE]}),
    ({"key": ""}, {"key": [KEY_REQUIRED_MESSAGE.format(dimension="route")]}),
    ({"dimension": "", "key": "api"}, {"key": [KEY_WITHOUT_DIMENSION_MESSAGE]}),
    ({"dimension": "tool", "key": "forecast"}, {"key": [TOOL_KEY_MESSAGE]}),
    ({"metric": "memory_mb"}, {"dimension": [PROCESS_METRIC_SCOPE_MESSAGE]}),
    ({"webhook_url": "ftp://hooks.example/ops"}, {"webhook_url": ["Enter a valid URL."]}),
]


@pytest.mark.parametrize(("change", "errors"), BAD_RULES)
def test_a_bad_rule_is_refused_with_the_models_message(staff_api: ApiClient, change: dict[str, Any], errors: dict[str, Any]) -> None:
    problem = assert_problem(staff_api.send("post", RULES, {**SLOW_API, **change}), 400, "validation_failed")
    assert problem["errors"] == errors
    assert not AlertRule.objects.exists()


def test_a_rule_name_is_taken_once(staff_api: ApiClient) -> None:
    rule("slow-api")
    problem = assert_problem(staff_api.send("post", RULES, SLOW_API), 400, "validation_failed")
    assert problem["errors"] == {"name": ["alert rule with this name already exists."]}  # DRF's wording


def test_a_partial_change_is_validated_with_the_rest_of_the_rule(staff_api: ApiClient) -> None:
    errors = rule("errors", dimension="route", key="api")
    detail = f"{RULES}{errors.pk}/"
    problem = assert_problem(staff_api.send("patch", detail, {"threshold": 150}), 400, "validation_failed")
    assert problem["errors"] == {"threshold": [PERCENT_THRESHOLD_MESSAGE]}
    problem = assert_problem(staff_api.send("patch", detail, {"metric": "cpu_percent"}), 400, "validation_failed")
    assert problem["errors"] == {"dimension": [PROCESS_METRIC_SCOPE_MESSAGE]}
    errors.refresh_from_db()
    assert (errors.metric, errors.threshold) == ("error_rate", 5)


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"metric": ["error_rate"]}, "metric"), ({"dimension": {"route": "api"}}, "dimension"), ({"threshold": "high"}, "threshold")],
)
def test_values_of_the_wrong_type_get_field_messages_from_the_model_not_a_crash(db: Any, fields: dict[str, Any], field: str) -> None:
    # What the importer or a script hands the model without a form or serializer in front.
    candidate = AlertRule(**{"name": "odd", "metric": "error_rate", "threshold": 5, "dimension": "route", "key": "api", **fields})
    with pytest.raises(ValidationError) as refusal:
        candidate.full_clean()
    assert list(refusal.value.message_dict) == [field]


# --- who may read and change ----------------------------------------------------------------------


def test_a_key_holding_api_read_reads_everything_but_changes_nothing(key_api: Any) -> None:
    existing = rule("errors")
    reader = key_api(["api:read"])
    for path in READ_ENDPOINTS:
        assert reader.get(path).status_code == 200, path
    assert reader.get_json(f"{RULES}{existing.pk}/")["name"] == "errors"
    for method, path, body in [("post", RULES, SLOW_API), ("patch", f"{RULES}{existing.pk}/", {"threshold": 9}), ("delete", f"{RULES}{existing.pk}/", None)]:
        problem = assert_problem(reader.send(method, path, body), 403, "forbidden")
        assert problem["detail"] == KEY_CANNOT_WRITE
    existing.refresh_from_db()
    assert existing.threshold == 5 and AlertRule.objects.count() == 1


def test_a_key_holding_api_write_with_a_staff_owner_creates_a_rule(key_api: Any) -> None:
    assert key_api(["api:read", "api:write"]).send("post", RULES, SLOW_API).status_code == 201
    assert AlertRule.objects.get().name == "slow-api"


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_anonymous_gets_401_with_a_bearer_challenge(anonymous_api: ApiClient, path: str) -> None:
    response = anonymous_api.get(path)
    problem = assert_problem(response, 401, "credential_required")
    assert problem["detail"] == CREDENTIAL_REQUIRED
    assert response[WWW_AUTHENTICATE_HEADER].startswith("Bearer ")


# --- events ----------------------------------------------------------------------------------------


@pytest.fixture
def history(db: Any) -> None:
    """Two rules' events at known moments: errors fired, resolved, fired again; cpu fired."""
    errors, cpu = rule("errors"), rule("cpu", "cpu_percent", 90)
    for minute, (which, state, value) in enumerate(
        [(errors, "firing", 12.0), (cpu, "firing", 97.5), (errors, "resolved", None), (errors, "firing", 30.0)]
    ):
        at = datetime(2026, 1, 1, 12, minute, tzinfo=timezone.utc)
        AlertEvent.objects.create(rule=which, state=state, value=value, threshold=which.threshold, at=at)


def test_events_are_listed_newest_first_with_their_rule_by_name(staff_api: ApiClient, history: None) -> None:
    events = staff_api.get_json(EVENTS)["results"]
    assert [(e["rule"], e["state"], e["value"]) for e in events] == [
        ("errors", "firing", 30.0),
        ("errors", "resolved", None),
        ("cpu", "firing", 97.5),
        ("errors", "firing", 12.0),
    ]
    assert events[0]["at"] == "2026-01-01T12:03:00Z" and events[0]["threshold"] == 5.0


def test_events_are_filtered_by_rule_name_and_state(staff_api: ApiClient, history: None) -> None:
    assert [e["value"] for e in staff_api.get_json(EVENTS, rule="errors", state="firing")["results"]] == [30.0, 12.0]
    assert [e["rule"] for e in staff_api.get_json(EVENTS, state="resolved")["results"]] == ["errors"]
    assert staff_api.get_json(EVENTS, rule="nobody")["results"] == []
    problem = assert_problem(staff_api.get(EVENTS, {"state": "burning"}), 400, "validation_failed")
    assert problem["errors"] == {"state": ["Select a valid choice. burning is not one of the available choices."]}


def test_events_cannot_be_written_through_the_api(staff_api: ApiClient, history: None) -> None:
    event = AlertEvent.objects.first()
    assert event is not None
    assert_problem(staff_api.send("post", EVENTS, {"rule": "errors", "state": "firing"}), 405, "method_not_allowed")
    assert_problem(staff_api.send("delete", f"{EVENTS}{event.pk}/"), 405, "method_not_allowed")
    assert AlertEvent.objects.count() == 4


# --- metrics after a known mix of requests ---------------------------------------------------------


@pytest.fixture
def request_mix(client: Client, make_route: Any, upstream: UpstreamServer) -> int:
    """Six exchanges through the real pipeline, one of them a 500, flushed one interval ago (so
    the window is settled when the API reads it at the real time). Returns that window's start."""
    make_route("/api", upstream.url, name="api")
    make_route("/other", upstream.url, name="other")
    statuses = [client.get("/api/echo").status_code for _ in range(3)]
    statuses += [client.get("/api/status/500").status_code]
    statuses += [client.get("/other/echo").status_code for _ in range(2)]
    assert statuses == [200, 200, 200, 500, 200, 200]
    flushed_at = time.time() - INTERVAL
    assert flush_metrics(now=flushed_at)
    return window_start(flushed_at, INTERVAL)


def test_metrics_give_each_key_of_a_dimension_its_counts_and_rates(staff_api: ApiClient, request_mix: int) -> None:
    answer = staff_api.get_json(METRICS, dimension="route", window=300)
    assert answer["count"] == 2
    api, other = answer["results"]
    assert (api["key"], api["count"], api["errors"], api["error_rate"]) == ("api", 4, 1, 0.25)
    assert api["throughput_rps"] == pytest.approx(4 / 300)
    assert (other["key"], other["count"], other["errors"], other["error_rate"]) == ("other", 2, 0, 0.0)
    assert 0 < api["p50_ms"] <= api["p95_ms"] <= api["p99_ms"] < 5_000 and 0 < api["avg_ms"] < 5_000


def test_metrics_default_to_the_whole_gateway_over_a_minute(staff_api: ApiClient, request_mix: int) -> None:
    [gateway] = staff_api.get_json(METRICS)["results"]
    assert (gateway["key"], gateway["count"], gateway["errors"]) == ("all", 6, 1)
    assert gateway["throughput_rps"] == pytest.approx(6 / 60)


def test_metrics_are_paged_like_every_list(staff_api: ApiClient, request_mix: int) -> None:
    page = staff_api.get_json(METRICS, dimension="target", limit=1)
    assert page["count"] == 1 and page["next"] is None
    assert page["results"][0]["count"] == 6  # both routes send to the one upstream
    second = staff_api.get_json(METRICS, dimension="route", window=300, limit=1, offset=1)
    assert [entry["key"] for entry in second["results"]] == ["other"] and second["previous"] is not None


def test_the_series_has_a_point_per_interval_with_the_traffic_in_its_window(staff_api: ApiClient, request_mix: int) -> None:
    answer = staff_api.get_json(SERIES, dimension="route", key="api", minutes=1)
    assert {name: answer[name] for name in ("dimension", "key", "minutes", "interval_seconds")} == {
        "dimension": "route",
        "key": "api",
        "minutes": 1,
        "interval_seconds": INTERVAL,
    }
    points = answer["points"]
    assert len(points) == 60 // INTERVAL
    assert [point["t"] for point in points] == sorted(point["t"] for point in points)
    [busy] = [point for point in points if point["count"]]
    assert (busy["t"], busy["count"], busy["error_rate"]) == (request_mix, 4, 0.25)
    assert busy["throughput_rps"] == pytest.approx(4 / INTERVAL) and busy["p95_ms"] is not None


def test_the_series_defaults_to_the_whole_gateway_over_an_hour(staff_api: ApiClient, request_mix: int) -> None:
    answer = staff_api.get_json(SERIES)
    assert (answer["dimension"], answer["key"], answer["minutes"]) == ("gateway", "all", 60)
    assert len(answer["points"]) == 3600 // INTERVAL
    assert sum(point["count"] for point in answer["points"]) == 6


def test_processes_list_this_process_after_its_flush(staff_api: ApiClient, request_mix: int) -> None:
    [gauges] = staff_api.get_json(PROCESSES)["processes"]
    assert (gauges["process"], gauges["pid"]) == (process_name(), os.getpid())
    assert gauges["rss_bytes"] > 10 * 1024 * 1024 and gauges["cpu_percent"] >= 0.0 and gauges["in_flight"] >= 0


def test_an_empty_parameter_takes_its_default(staff_api: ApiClient, request_mix: int) -> None:
    [gateway] = staff_api.get_json(METRICS, dimension="", window="")["results"]
    assert (gateway["key"], gateway["throughput_rps"]) == ("all", pytest.approx(6 / 60))


def test_before_any_flush_there_are_no_keys_and_no_processes(staff_api: ApiClient) -> None:
    assert staff_api.get_json(METRICS, dimension="route")["results"] == []
    assert staff_api.get_json(PROCESSES) == {"processes": []}


# --- each rule's state now -------------------------------------------------------------------------


def test_alerts_give_each_rules_state_as_last_evaluated(staff_api: ApiClient, request_mix: int) -> None:
    rule("api-errors", threshold=10, dimension="route", key="api", window_seconds=60)
    rule("other-slow", "p95_latency_ms", 60_000, dimension="route", key="other", window_seconds=60)
    rule("paused", enabled=False)
    evaluated_at = time.time()
    evaluate_alerts(now=evaluated_at)
    rule("new")  # created after the evaluation: no state, no event
    restarted = rule("restarted")  # an event but no stored state, as after an embedded restart
    AlertEvent.objects.create(rule=restarted, state="firing", value=9.0, threshold=5)

    states = {entry["name"]: entry for entry in staff_api.get_json(ALERTS)["results"]}
    assert list(states) == ["api-errors", "new", "other-slow", "paused", "restarted"]
    assert {name: entry["state"] for name, entry in states.items()} == {
        "api-errors": "firing",
        "new": "not_evaluated",
        "other-slow": "ok",
        "paused": "disabled",
        "restarted": "firing",
    }
    assert (states["api-errors"]["value"], states["api-errors"]["evaluated_at"]) == (25.0, evaluated_at)
    assert states["other-slow"]["value"] < 60_000
    assert states["restarted"]["value"] is None and states["restarted"]["evaluated_at"] is None
    assert AlertEvent.objects.filter(rule__name="api-errors", state="firing").count() == 1


# --- bad query parameters and an unreachable store ----------------------------------------------


BAD_QUERIES = [
    # (path, query, the field, its message)
    (METRICS, {"dimension": "region"}, "dimension", UNKNOWN_DIMENSION.format(input="region")),
    (METRICS, {"window": "59"}, "window", WINDOW_RANGE),
    (METRICS, {"window": "3601"}, "window", WINDOW_RANGE),
    (METRICS, {"window": "a minute"}, "window", WINDOW_RANGE),
    (SERIES, {"dimension": "planet", "key": "x"}, "dimension", UNKNOWN_DIMENSION.format(input="planet")),
    (SERIES, {"minutes": "0"}, "minutes", MINUTES_RANGE),
    (SERIES, {"minutes": "61"}, "minutes", MINUTES_RANGE),
    (SERIES, {"dimension": "route"}, "key", KEY_REQUIRED),
    (SERIES, {"dimension": "gateway", "key": "api"}, "key", GATEWAY_KEY_ONLY),
]


@pytest.mark.parametrize(("path", "query", "field", "message"), BAD_QUERIES)
def test_a_bad_query_parameter_is_a_400_naming_the_allowed_values(
    staff_api: ApiClient, path: str, query: dict[str, str], field: str, message: str
) -> None:
    problem = assert_problem(staff_api.get(path, query), 400, "validation_failed")
    assert problem["errors"] == {field: [message]}
    assert problem["instance"] == path


def test_the_messages_name_the_allowed_values() -> None:
    assert "gateway, route, target, api_key, tool" in UNKNOWN_DIMENSION
    assert "from 60 to 3600" in WINDOW_RANGE and "from 1 to 60" in MINUTES_RANGE


@pytest.mark.parametrize("path", [METRICS, SERIES, PROCESSES, ALERTS])
def test_metrics_and_states_need_the_state_store(key_api: Any, state_store_down: None, path: str) -> None:
    rule("errors")
    response = key_api(["api:read"]).get(path)
    problem = assert_problem(response, 503, "state_store_unavailable")
    assert response["Retry-After"] == "5" and problem["detail"].startswith("The state store")
