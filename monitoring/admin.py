"""Admin for alert rules (with each rule's state right now) and their read-only event history.

States are coloured badges whose colours are classes in ``monitoring/static/monitoring/admin.css``
(the admin runs under ``default-src 'self'``, so no inline style).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from gateway_project.state import StateStoreUnavailable
from monitoring.alerts import read_rule_states
from monitoring.models import AlertEvent, AlertRule

NOT_EVALUATED = "not evaluated yet"
STATE_UNKNOWN = "unknown (the state store cannot be reached)"

# Badge tones; monitoring/admin.css colours each.
FIRING, OK, IDLE = "firing", "ok", "idle"


def describe_state(rule: AlertRule) -> tuple[str, str]:
    """The badge tone and words: "FIRING (812.4)", "ok (120.0)", "ok (no traffic)", ... as of
    the last evaluation."""
    if not rule.enabled:
        return IDLE, "disabled"
    try:
        state = read_rule_states([rule.pk]).get(rule.pk)
    except StateStoreUnavailable:
        return IDLE, STATE_UNKNOWN
    if state is None:
        return IDLE, NOT_EVALUATED
    value = "no traffic" if state.value is None else f"{state.value:.1f}"
    return (FIRING, f"FIRING ({value})") if state.firing else (OK, f"ok ({value})")


def state_badge(tone: str, words: str) -> SafeString:
    return format_html('<span class="alert-state alert-state-{}">{}</span>', tone, words)


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "metric", "threshold", "scope", "window_seconds", "current_state", "events"]
    list_filter = ["enabled", "metric", "dimension"]
    search_fields = ["name", "key"]
    # A webhook typed without a scheme is meant as https (Django 6's default; silences 5.x's warning).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("Condition", {"fields": ["metric", "threshold", "window_seconds"]}),
        ("Scope", {"fields": ["dimension", "key"]}),
        ("Notification", {"fields": ["webhook_url"]}),
    ]

    @admin.display(description="scope")
    def scope(self, rule: AlertRule) -> str:
        return rule.scope_label

    class Media:
        css = {"all": ["monitoring/admin.css"]}

    @admin.display(description="state now")
    def current_state(self, rule: AlertRule) -> SafeString:
        # One store read per row: a page lists tens of rules, and the admin is not the hot path.
        return state_badge(*describe_state(rule))

    @admin.display(description="history")
    def events(self, rule: AlertRule) -> str:
        url = reverse("admin:monitoring_alertevent_changelist") + f"?rule__id__exact={rule.pk}"
        return format_html('<a href="{}">events</a>', url)


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["at", "rule", "event_state", "value", "threshold", "webhook_status"]
    list_filter = ["state", "rule", "at"]
    list_select_related = ["rule"]
    search_fields = ["rule__name", "webhook_status"]
    date_hierarchy = "at"

    class Media:
        css = {"all": ["monitoring/admin.css"]}

    @admin.display(description="state", ordering="state")
    def event_state(self, event: AlertEvent) -> SafeString:
        return state_badge(FIRING if event.state == AlertEvent.State.FIRING else OK, event.get_state_display())

    # History: written by the evaluator only, so viewable and deletable, never added or edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
