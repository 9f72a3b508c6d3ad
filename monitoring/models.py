"""Alert rules, and the history of their firing and resolving.

A rule watches one metric of one scope over a trailing window and compares it with a threshold:
latency percentiles, error rate and throughput of the whole gateway or of one route, target,
API key or tool; memory and CPU of the busiest gateway process. The worker evaluates the
enabled rules (``alerts.py``); each change of state is an ``AlertEvent``, also sent to the
rule's webhook when it has one.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.utils import timezone

MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 3600
DEFAULT_WINDOW_SECONDS = 300

WINDOW_RANGE_MESSAGE = (
    f"Choose a window from {MIN_WINDOW_SECONDS} seconds (1 minute) to {MAX_WINDOW_SECONDS} seconds (1 hour): "
    "the metrics keep one hour."
)
KEY_REQUIRED_MESSAGE = (
    "Name the {dimension} this rule watches (see the help text), or choose 'whole gateway' as the scope."
)
KEY_WITHOUT_DIMENSION_MESSAGE = (
    "Leave the key blank for the whole gateway, or choose what it names: a route, target, API key or tool."
)
TOOL_KEY_MESSAGE = "Name a tool as <service>:<tool>, e.g. weather:forecast."
PROCESS_METRIC_SCOPE_MESSAGE = (
    "Memory and CPU are watched on every gateway process (the busiest one counts): "
    "choose 'whole gateway' and leave the key blank."
)
PERCENT_THRESHOLD_MESSAGE = "This threshold is a percentage: give a number from 0 to 100 (e.g. 5 for 5%)."
NEGATIVE_THRESHOLD_MESSAGE = "A threshold cannot be negative."


class AlertRule(models.Model):
    class Metric(models.TextChoices):
        P95_LATENCY_MS = "p95_latency_ms", "p95 latency (ms) above"
        P99_LATENCY_MS = "p99_latency_ms", "p99 latency (ms) above"
        ERROR_RATE = "error_rate", "error rate (%) above"
        THROUGHPUT_BELOW = "throughput_rps_below", "throughput (requests/s) below"
        MEMORY_MB = "memory_mb", "memory of a process (MiB) above"
        CPU_PERCENT = "cpu_percent", "CPU of a process (%) above"

    class Dimension(models.TextChoices):
        GATEWAY = "", "whole gateway"
        ROUTE = "route", "route"
        TARGET = "target", "target"
        API_KEY = "api_key", "API key"
        TOOL = "tool", "tool"

    PROCESS_METRICS = frozenset({Metric.MEMORY_MB, Metric.CPU_PERCENT})
    PERCENT_METRICS = frozenset({Metric.ERROR_RATE})
    BELOW_METRICS = frozenset({Metric.THROUGHPUT_BELOW})

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    threshold = models.FloatField(
        validators=[MinValueValidator(0, message=NEGATIVE_THRESHOLD_MESSAGE)],
        help_text="In the metric's unit: milliseconds, percent, requests per second or MiB.",
    )
    window_seconds = models.PositiveIntegerField(
        "window (s)",
        default=DEFAULT_WINDOW_SECONDS,
        validators=[
            MinValueValidator(MIN_WINDOW_SECONDS, message=WINDOW_RANGE_MESSAGE),
            MaxValueValidator(MAX_WINDOW_SECONDS, message=WINDOW_RANGE_MESSAGE),
        ],
        help_text="The trailing stretch of time the metric is computed over (60 to 3600). "
        "Memory and CPU are always the processes' latest values.",
    )
    dimension = models.CharField("scope", max_length=16, choices=Dimension.choices, blank=True, default="")
    key = models.CharField(
        max_length=300,
        blank=True,
        help_text="What the scope names: the route's name, the target's URL, the API key's id, or "
        "<service>:<tool>. Blank for the whole gateway.",
    )
    webhook_url = models.URLField(
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Optional: each firing and resolved event is POSTed here as JSON (5 s timeout).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(window_seconds__gte=MIN_WINDOW_SECONDS, window_seconds__lte=MAX_WINDOW_SECONDS),
                name="alert_rule_window_in_range",
                violation_error_message=WINDOW_RANGE_MESSAGE,
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def watches_processes(self) -> bool:
        return self.metric in self.PROCESS_METRICS

    @property
    def fires_below(self) -> bool:
        """True when the rule fires under its threshold (throughput), not over it."""
        return self.metric in self.BELOW_METRICS

    @property
    def scope_label(self) -> str:
        if not self.dimension:
            return "whole gateway"
        return f"{self.get_dimension_display()} {self.key}"

    def clean(self) -> None:
        # full_clean() runs this even after a field failed its own checks, and such a field keeps
        # the value it was given (a list or an object from an imported document): compare only
        # values of the fields' types, the failed field has its message already.
        if not all(isinstance(value, str) for value in (self.metric, self.dimension, self.key)):
            return
        errors: dict[str, str] = {}
        if self.watches_processes and self.dimension:
            errors["dimension"] = PROCESS_METRIC_SCOPE_MESSAGE
        elif self.dimension and not self.key:
            errors["key"] = KEY_REQUIRED_MESSAGE.format(dimension=self.get_dimension_display())
        elif not self.dimension and self.key:
            errors["key"] = KEY_WITHOUT_DIMENSION_MESSAGE
        elif self.dimension == self.Dimension.TOOL and ":" not in self.key:
            errors["key"] = TOOL_KEY_MESSAGE
        if self.metric in self.PERCENT_METRICS and isinstance(self.threshold, (int, float)) and self.threshold > 100:
            errors["threshold"] = PERCENT_THRESHOLD_MESSAGE
        if errors:
            raise ValidationError(errors)


class AlertEvent(models.Model):
    """A rule started firing, or stopped: what was measured, against which threshold, and
    whether its webhook took the news."""

    class State(models.TextChoices):
        FIRING = "firing", "firing"
        RESOLVED = "resolved", "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=16, choices=State.choices)
    # None: nothing to measure (no traffic in the window, no live process).
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    at = models.DateTimeField(default=timezone.now, db_index=True)
    webhook_status = models.CharField(
        max_length=200, blank=True, help_text="Empty when the rule has no webhook; else what the delivery gave."
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["rule", "-at"], name="alert_event_rule_latest")]

    def __str__(self) -> str:
        return f"{self.rule} {self.state} at {self.at:%Y-%m-%d %H:%M:%S}"
