"""Evaluating the alert rules: the worker job that turns metrics into firing and resolved events.

Every ``ALERT_EVALUATION_EVERY_SECONDS`` one worker (a lease in the state store, so several
workers evaluate once) reads the enabled rules from the database, measures each rule's metric
(``queries.py``) and compares it with the threshold. Only a change of state writes an
``AlertEvent`` and calls the rule's webhook; a rule that stays firing stays quiet.

- Latency and error-rate rules need traffic: a window without exchanges is not slow or failing,
  so it counts as OK (a firing rule resolves, with no value). Throughput rules fire on it.
- Memory and CPU rules take the busiest live gateway process.
- Disabled rules are skipped, not resolved: enabled again, the next round decides.
- Each rule's state (firing or not, last value, when) lives in the state store, read by the
  admin and the dashboard. When it is missing (an embedded gateway restarted) the last event in
  the database says whether the rule was firing, so a restart does not fire it twice.
- The event is written and the webhook called before the state is stored: if storing the state
  fails, the next round repeats the event rather than losing it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from gateway_project.state import StateStore, StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from monitoring.layout import ALL_KEY
from monitoring.models import AlertEvent, AlertRule
from monitoring.queries import KeyStats, process_gauges, stats_for
from monitoring.webhooks import send_webhook

logger = logging.getLogger("gateway.alerts")

ALERT_EVALUATION_EVERY_SECONDS = 15
EVALUATION_LEASE_KEY = "alerts:evaluation-lease"
# Longer than a round can take (a few webhooks of 5 s each), so two workers never overlap.
EVALUATION_LEASE_SECONDS = 120
# Refreshed every round; the state of a deleted rule disappears by itself.
RULE_STATE_TTL_SECONDS = 24 * 3600
BYTES_PER_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RuleState:
    """A rule's verdict at its last evaluation (``at``: epoch seconds)."""

    firing: bool
    value: float | None
    at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RuleState:
        return cls(**json.loads(text))


def rule_state_key(rule_id: int) -> str:
    return f"alerts:rule:{rule_id}"


def read_rule_states(rule_ids: list[int], store: StateStore | None = None) -> dict[int, RuleState]:
    """The stored state of each rule that has one (one round trip)."""
    store = store or get_state_store()
    values = store.get_many([rule_state_key(rule_id) for rule_id in rule_ids])
    return {rule_id: RuleState.from_json(value) for rule_id, value in zip(rule_ids, values) if value is not None}


# --- measuring --------------------------------------------------------------------------------------


# Each traffic metric read from a key's statistics, in its threshold's unit.
TRAFFIC_MEASURES: dict[str, Callable[[KeyStats], float | None]] = {
    AlertRule.Metric.P95_LATENCY_MS: lambda stats: stats.p95_ms,
    AlertRule.Metric.P99_LATENCY_MS: lambda stats: stats.p99_ms,
    AlertRule.Metric.ERROR_RATE: lambda stats: stats.error_rate * 100,
    AlertRule.Metric.THROUGHPUT_BELOW: lambda stats: stats.throughput_rps,
}


def current_value(rule: AlertRule, now: float) -> float | None:
    """The rule's metric now, in the threshold's unit; None when there is nothing to measure."""
    if rule.watches_processes:
        return _busiest_process_value(rule, now)
    measure = TRAFFIC_MEASURES.get(rule.metric)
    if measure is None:
        raise ValueError(f"alert rule {rule.name!r} has an unknown metric {rule.metric!r}")
    stats = stats_for(rule.dimension or "gateway", rule.key or ALL_KEY, rule.window_seconds, now)
    if stats.count == 0 and not rule.fires_below:
        return None  # no exchanges: nothing was slow or failed
    return measure(stats)


def _busiest_process_value(rule: AlertRule, now: float) -> float | None:
    gauges = process_gauges(now)
    if not gauges:
        return None
    if rule.metric == AlertRule.Metric.MEMORY_MB:
        return max(entry.rss_bytes for entry in gauges) / BYTES_PER_MIB
    return max(entry.cpu_percent for entry in gauges)


def is_breached(rule: AlertRule, value: float | None) -> bool:
    if value is None:
        return False
    return value < rule.threshold if rule.fires_below else value > rule.threshold


# --- the worker job ----------------------------------------------------------------------------------


def evaluate_alerts(now: float | None = None) -> list[AlertEvent]:
    """Evaluate every enabled rule once, under the lease; return the events it wrote."""
    now = time.time() if now is None else now
    store = get_state_store()
    token = uuid.uuid4().hex
    try:
        if not store.set_if_absent(EVALUATION_LEASE_KEY, token, ttl=EVALUATION_LEASE_SECONDS):
            return []
    except StateStoreUnavailable as exc:
        note_state_store_down("alert evaluation", exc)
        return []
    try:
        return _evaluate_enabled_rules(store, now)
    except StateStoreUnavailable as exc:
        note_state_store_down("alert evaluation", exc)
        return []
    finally:
        _release_lease(store, token)


def run_alert_evaluation() -> None:
    """The worker's entry point: evaluate, and log every change of state."""
    for event in evaluate_alerts():
        log = logger.warning if event.state == AlertEvent.State.FIRING else logger.info
        webhook = event.webhook_status or "no webhook"
        log(
            "alert %r %s: value %s, threshold %s (%s)",
            event.rule.name,
            event.state,
            event.value,
            event.threshold,
            webhook,
        )


def enabled_rules() -> QuerySet[AlertRule]:
    """The enabled rules, each with ``last_state``: the state of its latest event, if any."""
    return with_last_state(AlertRule.objects.filter(enabled=True))


def with_last_state(rules: QuerySet[AlertRule]) -> QuerySet[AlertRule]:
    """``rules``, each annotated with ``last_state``: the state of its latest event, if any."""
    latest = AlertEvent.objects.filter(rule=OuterRef("pk")).order_by("-at", "-id").values("state")[:1]
    return rules.annotate(last_state=Subquery(latest))


def _evaluate_enabled_rules(store: StateStore, now: float) -> list[AlertEvent]:
    rules = list(enabled_rules())
    stored = read_rule_states([rule.pk for rule in rules], store)
    events: list[AlertEvent] = []
    for rule in rules:
        try:
            event = evaluate_rule(rule, was_firing=last_known_firing(rule, stored.get(rule.pk)), store=store, now=now)
        except StateStoreUnavailable:
            raise  # the metrics cannot be read: no rule can be evaluated this round
        except Exception:  # one broken rule must not keep the others from being evaluated
            logger.exception("evaluating alert rule %r failed", rule.name)
            continue
        if event is not None:
            events.append(event)
    return events


def last_known_firing(rule: AlertRule, stored: RuleState | None) -> bool:
    """The stored state; without one, the state of the rule's latest event (``with_last_state``)."""
    if stored is not None:
        return stored.firing
    return getattr(rule, "last_state", None) == AlertEvent.State.FIRING


def evaluate_rule(rule: AlertRule, *, was_firing: bool, store: StateStore, now: float) -> AlertEvent | None:
    """Measure ``rule``; on a change of state write the event and call the webhook."""
    value = current_value(rule, now)
    firing = is_breached(rule, value)
    event = None
    if firing != was_firing:
        event = record_event(rule, firing=firing, value=value, now=now)
    store.set(rule_state_key(rule.pk), RuleState(firing, value, now).to_json(), ttl=RULE_STATE_TTL_SECONDS)
    return event


def record_event(rule: AlertRule, *, firing: bool, value: float | None, now: float) -> AlertEvent:
    state = AlertEvent.State.FIRING if firing else AlertEvent.State.RESOLVED
    at = datetime.fromtimestamp(now, tz=dt_timezone.utc)
    event = AlertEvent.objects.create(rule=rule, state=state, value=value, threshold=rule.threshold, at=at)
    if rule.webhook_url:
        event.webhook_status = send_webhook(rule.webhook_url, webhook_payload(rule, event))
        event.save(update_fields=["webhook_status"])
    return event


def webhook_payload(rule: AlertRule, event: AlertEvent) -> dict[str, Any]:
    return {
        "alert": rule.name,
        "rule_id": rule.pk,
        "state": event.state,
        "metric": rule.metric,
        "description": rule.get_metric_display(),
        "scope": {"dimension": rule.dimension or "gateway", "key": rule.key or ALL_KEY},
        "value": event.value,
        "threshold": event.threshold,
        "window_seconds": rule.window_seconds,
        "at": event.at.isoformat(),
    }


def _release_lease(store: StateStore, token: str) -> None:
    try:
        store.delete_if_equals(EVALUATION_LEASE_KEY, token)
    except StateStoreUnavailable:
        pass  # the lease runs out by itself
