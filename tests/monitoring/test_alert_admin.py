"""Alert rules in the admin: validation that says what to fix, each rule's state right now as a
coloured badge, and the event history, read-only, with filters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import ValidationError
from django.templatetags.static import static
from django.utils.html import escape

from monitoring.alerts import evaluate_alerts
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
from tests.gateway_project.conftest import CLOSED_REDIS_URL, redis_url_setting
from tests.monitoring.conftest import T0

VALID = {
    "name": "slow api",
    "metric": "p95_latency_ms",
    "threshold": 250,
    "window_seconds": 300,
    "dimension": "route",
    "key": "api",
}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": ""}, "key", KEY_REQUIRED_MESSAGE.format(dimension="route")),
        ({"dimension": ""}, "key", KEY_WITHOUT_DIMENSION_MESSAGE),
        ({"dimension": "tool", "key": "forecast"}, "key", TOOL_KEY_MESSAGE),
        ({"metric": "memory_mb"}, "dimension", PROCESS_METRIC_SCOPE_MESSAGE),
        ({"metric": "cpu_percent", "key": ""}, "dimension", PROCESS_METRIC_SCOPE_MESSAGE),
        ({"metric": "error_rate", "threshold": 150}, "threshold", PERCENT_THRESHOLD_MESSAGE),
        ({"threshold": -1}, "threshold", NEGATIVE_THRESHOLD_MESSAGE),
        ({"window_seconds": 30}, "window_seconds", WINDOW_RANGE_MESSAGE),
        ({"window_seconds": 7200}, "window_seconds", WINDOW_RANGE_MESSAGE),
        ({"webhook_url": "ftp://hooks.example.com/x"}, "webhook_url", "Enter a valid URL."),
    ],
)
def test_a_bad_rule_is_refused_with_what_to_fix(db: None, changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AlertRule(**{**VALID, **changes}).full_clean()
    assert refused.value.message_dict[field] == [message]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"dimension": "", "key": ""},
        {"metric": "memory_mb", "dimension": "", "key": ""},
        {"dimension": "tool", "key": "weather:forecast"},
    ],
)
def test_good_rules_pass_validation(db: None, changes: dict[str, Any]) -> None:
    AlertRule(**{**VALID, **changes}).full_clean()


def test_the_admin_form_shows_the_message_beside_the_field(admin_client: Any) -> None:
    form = {**VALID, "key": "", "enabled": "on", "webhook_url": ""}
    response = admin_client.post("/admin/monitoring/alertrule/add/", form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["key"] == [KEY_REQUIRED_MESSAGE.format(dimension="route")]
    assert escape(KEY_REQUIRED_MESSAGE.format(dimension="route")) in response.content.decode()
    assert not AlertRule.objects.exists()


def test_the_rule_list_shows_each_rules_state_now(admin_client: Any) -> None:
    AlertRule.objects.create(name="quiet", metric="throughput_rps_below", threshold=1, window_seconds=60)
    AlertRule.objects.create(name="off", metric="p95_latency_ms", threshold=1, window_seconds=60, enabled=False)
    assert "not evaluated yet" in admin_client.get("/admin/monitoring/alertrule/").content.decode()
    evaluate_alerts(now=T0)
    page = admin_client.get("/admin/monitoring/alertrule/").content.decode()
    assert "FIRING (0.0)" in page and "disabled" in page and "whole gateway" in page


def test_the_rule_list_still_loads_when_the_state_store_is_down(admin_client: Any) -> None:
    AlertRule.objects.create(name="quiet", metric="throughput_rps_below", threshold=1, window_seconds=60)
    with redis_url_setting(CLOSED_REDIS_URL):
        response = admin_client.get("/admin/monitoring/alertrule/")
    assert response.status_code == 200
    assert "unknown (the state store cannot be reached)" in response.content.decode()


def test_events_are_listed_with_filters_and_cannot_be_added_or_edited(admin_client: Any) -> None:
    rule = AlertRule.objects.create(name="quiet", metric="throughput_rps_below", threshold=1, window_seconds=60)
    [event] = evaluate_alerts(now=T0)
    listing = admin_client.get(f"/admin/monitoring/alertevent/?state=firing&rule__id__exact={rule.pk}")
    assert listing.status_code == 200 and "quiet" in listing.content.decode()
    assert admin_client.get("/admin/monitoring/alertevent/add/").status_code == 403
    detail = admin_client.get(f"/admin/monitoring/alertevent/{event.pk}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    admin_client.post(f"/admin/monitoring/alertevent/{event.pk}/change/", {"state": "resolved"})
    assert AlertEvent.objects.get().state == "firing"


STATE_BADGE = re.compile(r'<span class="alert-state alert-state-(\w+)">([^<]+)</span>')


def test_rule_and_event_states_are_coloured_badges(admin_client: Any) -> None:
    AlertRule.objects.create(name="quiet", metric="throughput_rps_below", threshold=1, window_seconds=60)
    AlertRule.objects.create(name="calm", metric="error_rate", threshold=50, window_seconds=60)
    AlertRule.objects.create(name="off", metric="p95_latency_ms", threshold=1, window_seconds=60, enabled=False)
    assert sorted(STATE_BADGE.findall(admin_client.get("/admin/monitoring/alertrule/").content.decode())) == [
        ("idle", "disabled"), ("idle", "not evaluated yet"), ("idle", "not evaluated yet"),
    ]
    evaluate_alerts(now=T0)
    rules = admin_client.get("/admin/monitoring/alertrule/").content.decode()
    assert sorted(STATE_BADGE.findall(rules)) == [("firing", "FIRING (0.0)"), ("idle", "disabled"), ("ok", "ok (no traffic)")]
    assert static("monitoring/admin.css") in rules
    events = admin_client.get("/admin/monitoring/alertevent/").content.decode()
    assert STATE_BADGE.findall(events) == [("firing", "firing")]
    stylesheet = Path(str(finders.find("monitoring/admin.css"))).read_text()
    assert all(f".alert-state-{tone} " in stylesheet for tone in ("firing", "ok", "idle"))
