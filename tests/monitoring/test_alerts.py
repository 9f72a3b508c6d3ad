"""Alert evaluation: rules fire past their threshold and resolve when back, once per change,
with the webhook told both times; the lease, the restart fallback and failures."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_project.state import get_state_store
from gateway_project.worker import PERIODIC_JOBS
from monitoring.alerts import (
    ALERT_EVALUATION_EVERY_SECONDS,
    EVALUATION_LEASE_KEY,
    evaluate_alerts,
    read_rule_states,
    run_alert_evaluation,
)
from monitoring.flush import flush_metrics
from monitoring.histogram import BOUNDS_MS, bucket_index
from monitoring.models import AlertEvent, AlertRule
from monitoring.recorder import recorder
from tests.gateway_project.conftest import CLOSED_REDIS_URL, redis_url_setting
from tests.live_servers import free_port
from tests.monitoring.conftest import INTERVAL, T0, WebhookReceiver

API = [("gateway", "all"), ("route", "api")]


def serve(count: int, latency_ms: float, *, errors: int = 0) -> None:
    """``count`` exchanges on route "api", the first ``errors`` of them failed."""
    for number in range(count):
        recorder.add(API, latency_ms, is_error=number < errors)


def flush_and_evaluate(at: float) -> list[AlertEvent]:
    """Flush just after the boundary ``at``, evaluate once that window has settled."""
    assert flush_metrics(now=at + 1)
    return evaluate_alerts(now=at + 5)


def make_rule(metric: str, threshold: float, **fields: Any) -> AlertRule:
    fields.setdefault("name", f"{metric} rule")
    fields.setdefault("window_seconds", 60)
    rule = AlertRule(metric=metric, threshold=threshold, **fields)
    rule.full_clean()
    rule.save()
    return rule


def history(rule: AlertRule) -> list[tuple[str, float | None]]:
    return [(event.state, event.value) for event in rule.events.order_by("at", "id")]


def test_a_latency_rule_fires_past_its_threshold_and_resolves_with_the_webhook_told_both_times(
    db: None, webhook: WebhookReceiver
) -> None:
    rule = make_rule("p95_latency_ms", 200, dimension="route", key="api", webhook_url=webhook.url)
    serve(20, 500.0)
    [fired] = flush_and_evaluate(T0)
    assert fired.state == "firing" and fired.threshold == 200
    assert (
        fired.value is not None and BOUNDS_MS[bucket_index(500.0) - 1] <= fired.value <= BOUNDS_MS[bucket_index(500.0)]
    )
    assert fired.webhook_status == "delivered (HTTP 204)"

    assert evaluate_alerts(now=T0 + 6) == []  # still firing: no second event, no second call
    assert len(webhook.received) == 1

    serve(20, 20.0)
    [resolved] = flush_and_evaluate(T0 + 70)  # the slow window has slid out of the last minute
    assert resolved.state == "resolved" and resolved.value is not None and resolved.value < 200

    assert [(payload["state"], payload["alert"]) for payload in webhook.received] == [
        ("firing", "p95_latency_ms rule"),
        ("resolved", "p95_latency_ms rule"),
    ]
    first = webhook.received[0]
    assert first["scope"] == {"dimension": "route", "key": "api"}
    assert (first["metric"], first["threshold"], first["window_seconds"], first["value"]) == (
        "p95_latency_ms",
        200,
        60,
        fired.value,
    )
    assert webhook.content_types == ["application/json", "application/json"]
    assert [state for state, _ in history(rule)] == ["firing", "resolved"]


def test_the_rules_state_is_kept_in_the_state_store(db: None) -> None:
    rule = make_rule("p99_latency_ms", 200)
    serve(10, 400.0)
    flush_and_evaluate(T0)
    state = read_rule_states([rule.pk])[rule.pk]
    assert state.firing and state.value is not None and state.value > 200 and state.at == T0 + 5


@pytest.mark.parametrize(
    ("errors", "fires"),
    [(1, True), (0, False)],
    ids=["25 percent fires", "0 percent stays quiet"],
)
def test_an_error_rate_rule_compares_percentages(db: None, errors: int, fires: bool) -> None:
    rule = make_rule("error_rate", 10)
    serve(4, 10.0, errors=errors)
    events = flush_and_evaluate(T0)
    assert [(event.state, event.value) for event in events] == ([("firing", 25.0)] if fires else [])
    assert read_rule_states([rule.pk])[rule.pk].value == (25.0 if fires else 0.0)


def test_a_throughput_rule_fires_on_silence_and_resolves_on_traffic(db: None) -> None:
    rule = make_rule("throughput_rps_below", 1.0, dimension="route", key="api")
    assert [event.state for event in flush_and_evaluate(T0)] == ["firing"]
    serve(90, 10.0)  # 90 in the last minute: 1.5 per second
    assert [event.state for event in flush_and_evaluate(T0 + INTERVAL)] == ["resolved"]
    assert history(rule) == [("firing", 0.0), ("resolved", 1.5)]


def test_without_traffic_latency_rules_are_ok_and_a_firing_one_resolves(db: None) -> None:
    rule = make_rule("p95_latency_ms", 100)
    assert flush_and_evaluate(T0) == []
    assert read_rule_states([rule.pk])[rule.pk].value is None
    serve(5, 300.0)
    flush_and_evaluate(T0 + 10)
    [resolved] = flush_and_evaluate(T0 + 100)  # nothing served for over a minute
    assert (resolved.state, resolved.value) == ("resolved", None)


def test_a_memory_rule_watches_the_busiest_live_process(db: None) -> None:
    make_rule("memory_mb", 1)  # any Python process is over 1 MiB
    make_rule("cpu_percent", 10_000, name="cpu")  # no process uses a hundred cores
    [fired] = flush_and_evaluate(T0)
    assert fired.rule.metric == "memory_mb" and fired.value is not None and fired.value > 1


def test_disabled_rules_are_not_evaluated(db: None) -> None:
    make_rule("p95_latency_ms", 1, enabled=False)
    serve(5, 50.0)
    assert flush_and_evaluate(T0) == []


def test_only_the_worker_holding_the_lease_evaluates(db: None) -> None:
    make_rule("throughput_rps_below", 1)
    assert get_state_store().set_if_absent(EVALUATION_LEASE_KEY, "another worker", ttl=60)
    assert evaluate_alerts(now=T0) == []
    assert AlertEvent.objects.count() == 0
    get_state_store().delete(EVALUATION_LEASE_KEY)
    assert len(evaluate_alerts(now=T0)) == 1
    assert get_state_store().get(EVALUATION_LEASE_KEY) is None  # given back after the round


def test_after_a_restart_the_last_event_says_whether_the_rule_was_firing(db: None) -> None:
    rule = make_rule("throughput_rps_below", 1)
    [fired] = evaluate_alerts(now=T0)
    get_state_store().delete(f"alerts:rule:{rule.pk}")  # what an embedded restart loses
    assert evaluate_alerts(now=T0 + 15) == []  # still firing: not fired a second time
    serve(120, 5.0)
    assert [event.state for event in flush_and_evaluate(T0 + 20)] == ["resolved"]
    assert fired.state == "firing"


def test_a_webhook_that_fails_is_recorded_on_the_event(db: None, webhook: WebhookReceiver) -> None:
    webhook.answer_status = 500
    refused = make_rule("throughput_rps_below", 1, name="refused", webhook_url=webhook.url)
    unreachable = make_rule(
        "throughput_rps_below", 1, name="unreachable", webhook_url=f"http://127.0.0.1:{free_port()}/hook"
    )
    evaluate_alerts(now=T0)
    assert refused.events.get().webhook_status == "failed: HTTP 500"
    assert unreachable.events.get().webhook_status.startswith("failed: ")
    assert len(webhook.received) == 1


def test_a_broken_rule_does_not_keep_the_others_from_being_evaluated(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    AlertRule.objects.create(name="broken", metric="no_such_metric", threshold=1, window_seconds=60)
    make_rule("throughput_rps_below", 1, name="fine")
    [event] = evaluate_alerts(now=T0)
    assert event.rule.name == "fine"
    assert "evaluating alert rule 'broken' failed" in caplog.text


def test_an_unreachable_state_store_skips_the_round_without_raising(db: None) -> None:
    make_rule("throughput_rps_below", 1)
    with redis_url_setting(CLOSED_REDIS_URL):
        assert evaluate_alerts(now=T0) == []
        run_alert_evaluation()
    assert AlertEvent.objects.count() == 0


def test_the_worker_evaluates_the_alerts_every_fifteen_seconds() -> None:
    [job] = [job for job in PERIODIC_JOBS if job.name == "alert evaluation"]
    assert job.run is run_alert_evaluation and job.every_seconds == ALERT_EVALUATION_EVERY_SECONDS == 15
