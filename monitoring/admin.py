"""Admin for alert rules (with each rule's state right now) and their read-only event history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from gateway_project.state import StateStoreUnavailable
from monitoring.alerts import read_rule_states
from monitoring.models import AlertEvent, AlertRule

NOT_EVALUATED = "not evaluated yet"
STATE_UNKNOWN = "unknown (the state store cannot be reached)"


def describe_state(rule: AlertRule) -> str:
    """ "FIRING (812.4)", "ok (120.0)", "ok (no traffic)", ... as of the last evaluation."""
    if not rule.enabled:
        return "disabled"
    try:
        state = read_rule_states([rule.pk]).get(rule.pk)
    except StateStoreUnavailable:
        return STATE_UNKNOWN
    if state is None:
        return NOT_EVALUATED
    value = "no traffic" if state.value is None else f"{state.value:.1f}"
    return f"{'FIRING' if state.firing else 'ok'} ({value})"


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

    @admin.display(description="state now")
    def current_state(self, rule: AlertRule) -> str:
        # One store read per row: a page lists tens of rules, and the admin is not the hot path.
        return describe_state(rule)

    @admin.display(description="history")
    def events(self, rule: AlertRule) -> str:
        url = reverse("admin:monitoring_alertevent_changelist") + f"?rule__id__exact={rule.pk}"
        return format_html('<a href="{}">events</a>', url)


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["at", "rule", "state", "value", "threshold", "webhook_status"]
    list_filter = ["state", "rule", "at"]
    list_select_related = ["rule"]
    search_fields = ["rule__name", "webhook_status"]
    date_hierarchy = "at"

    # History: written by the evaluator only, so viewable and deletable, never added or edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
