"""Target health in the admin: coloured badges, the live columns, and "run a health check now".

The columns show what the hot path believes right now (``routing/target_status.py``): health,
circuit and active connections come from the state store, one lookup per row, never on the
proxied path. A check now probes exactly as the background worker does (``routing/health.py``)
and its result counts toward the same thresholds: one more check, not an override.

Badge colours are classes in ``routing/static/routing/admin.css``, because the admin is served
under ``default-src 'self'``, which forbids inline style.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from gateway_project.state import StateStoreUnavailable
from routing.circuit import CircuitState
from routing.health import HealthCheckOutcome, check_services
from routing.models import Service, Target
from routing.snapshot import ServiceConfig, service_config
from routing.target_status import LiveStatus, live_statuses

CHECK_SKIPPED_MESSAGE = "{count} disabled target(s) skipped: the gateway checks only enabled targets."
CHECK_NOT_RECORDED_MESSAGE = "The state store cannot be reached: the check results were not recorded. Try again."

STYLESHEET = "routing/admin.css"

# Badge tones; routing/admin.css colours each.
OK, WARN, BAD, OFF = "ok", "warn", "bad", "off"
CIRCUIT_TONES = {CircuitState.CLOSED: OK, CircuitState.HALF_OPEN: WARN, CircuitState.OPEN: BAD}


def badge(tone: str, text: str, explanation: str = "") -> SafeString:
    """A coloured label; the colour comes from the stylesheet's class for ``tone``."""
    return format_html('<span class="routing-badge routing-badge-{}" title="{}">{}</span>', tone, explanation, text)


def live_status(target: Target) -> LiveStatus | None:
    """The hot path's verdicts on a target, or None when the state store cannot be reached.

    Kept on the row object, which is this request's own: the several columns of a row ask once.
    """
    if not hasattr(target, "_live_status"):
        try:
            status: LiveStatus | None = live_statuses([target.pk])[target.pk]
        except StateStoreUnavailable:
            status = None
        setattr(target, "_live_status", status)
    return getattr(target, "_live_status")


class TargetStatusColumns:
    """Columns shared by the target list and the targets inline of a service."""

    # An inline's blank "add another" row has no target yet: "-" in every column.

    @admin.display(description="health")
    def health(self, target: Target) -> SafeString | str:
        if not target.pk:
            return "-"
        if not target.enabled:
            return badge(OFF, "disabled", "Takes no traffic and is not checked.")
        status = live_status(target)
        # Without the state store, the row's verdict from the last check is the best there is.
        if (not target.healthy) if status is None else status.down:
            return badge(BAD, "unhealthy", "Failed its active health checks; no traffic until it passes again.")
        if status is not None and status.ejected:
            return badge(WARN, "ejected", "Failing live traffic; out of rotation for a cool-down.")
        return badge(OK, "healthy")

    @admin.display(description="circuit")
    def circuit(self, target: Target) -> SafeString | str:
        if not target.pk:
            return "-"
        status = live_status(target)
        if status is None:
            return badge(OFF, "unknown", "The state store cannot be reached.")
        state = CircuitState(status.circuit)
        return badge(CIRCUIT_TONES[state], state.value.replace("_", "-"))

    @admin.display(description="active connections")
    def connections_now(self, target: Target) -> int | str:
        if not target.pk:
            return "-"
        status = live_status(target)
        return "?" if status is None else status.in_flight

    @admin.display(description="response time", ordering="response_time_ms")
    def response_time(self, target: Target) -> str:
        return "-" if target.response_time_ms is None else f"{target.response_time_ms:.1f} ms"


def services_to_check(targets: Sequence[Target]) -> list[ServiceConfig]:
    """The selected targets' services, each holding only its selected enabled targets."""
    wanted = {target.pk for target in targets}
    rows = Service.objects.filter(targets__pk__in=wanted).distinct().prefetch_related("targets")
    configs = [service_config(row) for row in rows]  # service_config keeps enabled targets only
    return [replace(config, targets=tuple(t for t in config.targets if t.id in wanted)) for config in configs]


def describe_check(outcome: HealthCheckOutcome, service: ServiceConfig) -> str:
    """What one probe found and what it did to the verdict, thresholds included."""
    result = outcome.result
    found = f"answered in {result.response_time_ms:.1f} ms ({result.detail})" if result.ok else f"failed ({result.detail})"
    if outcome.changed:
        verdict = f"now {'healthy' if outcome.healthy else 'unhealthy'}"
    elif outcome.healthy and not result.ok:
        verdict = f"still healthy until {service.unhealthy_threshold} checks in a row fail"
    elif not outcome.healthy and result.ok:
        verdict = f"still unhealthy until {service.healthy_threshold} checks in a row pass"
    else:
        verdict = f"still {'healthy' if outcome.healthy else 'unhealthy'}"
    return f"{outcome.target_url}: {found}; {verdict}."


def run_health_checks_now(request: HttpRequest, targets: Sequence[Target]) -> None:
    """Probe the enabled targets among ``targets`` at once and report each; the targets'
    health columns (last check, response time, health) update as after a worker's check."""
    services = services_to_check(targets)
    checked = sum(len(service.targets) for service in services)
    if checked < len(targets):
        messages.info(request, CHECK_SKIPPED_MESSAGE.format(count=len(targets) - checked))
    try:
        outcomes = check_services(services, now=time.time())
    except StateStoreUnavailable:
        messages.error(request, CHECK_NOT_RECORDED_MESSAGE)
        return
    by_name = {service.name: service for service in services}
    for outcome in outcomes:
        level = messages.SUCCESS if outcome.result.ok else messages.WARNING
        messages.add_message(request, level, describe_check(outcome, by_name[outcome.service]))
