"""The REST API of monitoring: alert rules, their history and state, and the metrics they watch.

    /api/v1/alert-rules/          CRUD; ?enabled=true&metric=error_rate&dimension=route
    /api/v1/alert-events/         read-only, newest first; ?rule=<name>&state=firing
    /api/v1/alerts/               each rule's state as of its last evaluation
    /api/v1/metrics/              ?dimension=route&window=60: each key's recent statistics
    /api/v1/metrics/series/       ?dimension=gateway&key=all&minutes=60: one point per interval
    /api/v1/metrics/processes/    each live gateway process's memory, CPU and in-flight exchanges

Metrics are what every process flushed into the shared store (``queries.py``), so they trail the
traffic by one flush interval (``GATEWAY_METRICS_INTERVAL_SECONDS``, 10 s by default). Units:
latencies in milliseconds, error rates as fractions (0.0 to 1.0; an alert rule's error-rate
threshold, which a person types, is a percentage), throughput in requests per second, times in
epoch seconds. A bad query parameter is a 400 whose message names the allowed values.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.api_models import CleanedModelSerializer, ConfigModelViewSet
from monitoring.alerts import RuleState, last_known_firing, read_rule_states, with_last_state
from monitoring.conf import monitoring_settings
from monitoring.layout import ALL_KEY, DIMENSIONS, SERIES_SECONDS
from monitoring.models import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS, AlertEvent, AlertRule
from monitoring.queries import process_gauges, series, snapshot

DEFAULT_WINDOW_SECONDS = 60
MAX_SERIES_MINUTES = SERIES_SECONDS // 60
GATEWAY_DIMENSION = "gateway"

DIMENSION_CHOICES = "choose one of: " + ", ".join(DIMENSIONS) + "."
UNKNOWN_DIMENSION = 'Unknown dimension "{input}"; ' + DIMENSION_CHOICES  # {input}: filled in by DRF
WINDOW_RANGE = (
    f"Give window in seconds, a whole number from {MIN_WINDOW_SECONDS} to {MAX_WINDOW_SECONDS}: the metrics keep one hour."
)
MINUTES_RANGE = f"Give minutes, a whole number from 1 to {MAX_SERIES_MINUTES}: the metrics keep one hour."
KEY_REQUIRED = (
    "Give the key this dimension names: a route's name, a target's URL, an API key's id or <service>:<tool>."
)
GATEWAY_KEY_ONLY = f"The gateway dimension has one key: {ALL_KEY}."

# What /api/v1/alerts/ says of a rule.
FIRING, OK, NOT_EVALUATED, DISABLED = "firing", "ok", "not_evaluated", "disabled"


# --- alert rules and events ------------------------------------------------------------------------


class AlertRuleSerializer(CleanedModelSerializer):
    """A metric of one scope, watched over a trailing window against a threshold."""

    class Meta:
        model = AlertRule
        fields = "__all__"


class AlertEventSerializer(serializers.ModelSerializer):
    """A rule started firing, or stopped: what was measured, and what its webhook answered."""

    rule = serializers.SlugRelatedField(slug_field="name", read_only=True, help_text="The rule's name.")

    class Meta:
        model = AlertEvent
        fields = ["id", "rule", "state", "value", "threshold", "at", "webhook_status"]
        read_only_fields = fields


class AlertRuleFilter(django_filters.FilterSet):
    class Meta:
        model = AlertRule
        fields = ["enabled", "metric", "dimension"]


class AlertEventFilter(django_filters.FilterSet):
    rule = django_filters.CharFilter(field_name="rule__name", help_text="The rule's name.")

    class Meta:
        model = AlertEvent
        fields = ["rule", "state"]


@extend_schema(tags=["monitoring"])
class AlertRuleViewSet(ConfigModelViewSet):
    """Alert rules: latency, error rate, throughput, memory or CPU against a threshold, for the
    whole gateway or one route, target, API key or tool. The worker evaluates them every 15 s."""

    queryset = AlertRule.objects.all()
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter


@extend_schema(tags=["monitoring"])
class AlertEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The history of the alert rules, newest first; written by the evaluator only."""

    queryset = AlertEvent.objects.select_related("rule").order_by("-at", "-id")
    serializer_class = AlertEventSerializer
    filterset_class = AlertEventFilter


# --- each rule's state now -------------------------------------------------------------------------


class AlertStateSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The rule's id.")
    name = serializers.CharField(help_text="The rule's name.")
    metric = serializers.CharField()
    threshold = serializers.FloatField()
    state = serializers.ChoiceField(
        choices=[FIRING, OK, NOT_EVALUATED, DISABLED],
        help_text="As of the last evaluation; before any, the state of the rule's latest event.",
    )
    value = serializers.FloatField(allow_null=True, help_text="The last measured value; null without traffic or evaluation.")
    evaluated_at = serializers.FloatField(allow_null=True, help_text="Epoch seconds of the last evaluation.")


@extend_schema(tags=["monitoring"])
class AlertStatesView(GenericAPIView):
    """Each alert rule (by name) with its state now, as the evaluator last stored it."""

    queryset = AlertRule.objects.order_by("name")
    serializer_class = AlertStateSerializer

    @extend_schema(responses=AlertStateSerializer(many=True))
    def get(self, request: Request) -> Response:
        rules = page_of(self, with_last_state(self.get_queryset()))
        states = read_rule_states([rule.pk for rule in rules if rule.enabled])  # one round trip per page
        return self.get_paginated_response([alert_state(rule, states.get(rule.pk)) for rule in rules])


def alert_state(rule: AlertRule, stored: RuleState | None) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "metric": rule.metric,
        "threshold": rule.threshold,
        "state": state_label(rule, stored),
        "value": stored.value if stored is not None else None,
        "evaluated_at": stored.at if stored is not None else None,
    }


def state_label(rule: AlertRule, stored: RuleState | None) -> str:
    """The evaluator's own reading (``last_known_firing``), or why there is none."""
    if not rule.enabled:
        return DISABLED  # skipped by the evaluator: a stored state would be stale
    if stored is None and getattr(rule, "last_state", None) is None:
        return NOT_EVALUATED
    return FIRING if last_known_firing(rule, stored) else OK


# --- metrics: the query parameters -----------------------------------------------------------------


def dimension_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=DIMENSIONS,
        default=GATEWAY_DIMENSION,
        error_messages={"invalid_choice": UNKNOWN_DIMENSION},
        help_text="What the keys are: the whole gateway (key: all), routes, targets, API keys or tools.",
    )


def bounded_integer(low: int, high: int, default: int, message: str, help_text: str) -> serializers.IntegerField:
    """A whole number in [low, high]; every way of missing it answers the one message."""
    messages = {name: message for name in ("invalid", "min_value", "max_value", "max_string_length")}
    return serializers.IntegerField(
        min_value=low, max_value=high, default=default, error_messages=messages, help_text=help_text
    )


class SnapshotQuerySerializer(serializers.Serializer):
    dimension = dimension_field()
    window = bounded_integer(
        MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS, DEFAULT_WINDOW_SECONDS, WINDOW_RANGE, "The trailing window, in seconds."
    )


class SeriesQuerySerializer(serializers.Serializer):
    dimension = dimension_field()
    key = serializers.CharField(
        required=False,
        max_length=1000,
        help_text="A route's name, a target's URL, an API key's id or <service>:<tool>; for the gateway: all (the default).",
    )
    minutes = bounded_integer(1, MAX_SERIES_MINUTES, MAX_SERIES_MINUTES, MINUTES_RANGE, "How far back the series goes.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["dimension"] != GATEWAY_DIMENSION:
            if not attrs.get("key"):
                raise serializers.ValidationError({"key": [KEY_REQUIRED]})
            return attrs
        if attrs.setdefault("key", ALL_KEY) != ALL_KEY:
            raise serializers.ValidationError({"key": [GATEWAY_KEY_ONLY]})
        return attrs


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The query parameters, checked (a 400 naming the allowed values otherwise)."""
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


def page_of(view: GenericAPIView, items: Any) -> list[Any]:
    """The page of ``items`` the request asks for (``?limit=``, ``?offset=``)."""
    page = view.paginate_queryset(items)
    assert page is not None, "every API view is paged (DEFAULT_PAGINATION_CLASS)"
    return list(page)


# --- metrics: the answers --------------------------------------------------------------------------


class KeyStatsSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="all, a route's name, a target's URL, an API key's id or <service>:<tool>.")
    count = serializers.IntegerField(help_text="Exchanges in the window.")
    errors = serializers.IntegerField(help_text="5xx answers and broken streams (4xx are not errors).")
    avg_ms = serializers.FloatField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(help_text="errors / count, from 0.0 to 1.0.")
    throughput_rps = serializers.FloatField(help_text="Exchanges per second over the window.")


class SeriesPointSerializer(serializers.Serializer):
    t = serializers.IntegerField(help_text="The interval's start, in epoch seconds.")
    count = serializers.IntegerField()
    throughput_rps = serializers.FloatField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField()


class SeriesSerializer(serializers.Serializer):
    dimension = serializers.CharField()
    key = serializers.CharField()
    minutes = serializers.IntegerField()
    interval_seconds = serializers.IntegerField(help_text="The width of one point.")
    points = SeriesPointSerializer(many=True, help_text="Oldest first; empty intervals included (count 0).")


class ProcessGaugesSerializer(serializers.Serializer):
    process = serializers.CharField(help_text="<host>:<pid>.")
    host = serializers.CharField()
    pid = serializers.IntegerField()
    rss_bytes = serializers.IntegerField(help_text="Resident memory.")
    cpu_percent = serializers.FloatField(help_text="CPU time over wall time since the previous sample; 100 is one core.")
    in_flight = serializers.IntegerField(help_text="Exchanges being served.")
    at = serializers.FloatField(help_text="When the sample was taken, in epoch seconds.")


class ProcessesSerializer(serializers.Serializer):
    processes = ProcessGaugesSerializer(many=True, help_text="Every process that flushed within the last three intervals.")


@extend_schema(tags=["monitoring"])
class MetricsView(GenericAPIView):
    """Each key of one dimension seen in the trailing window, with its statistics, by key."""

    serializer_class = KeyStatsSerializer
    filter_backends: list[Any] = []  # the keys are not rows: the parameters are read below

    @extend_schema(parameters=[SnapshotQuerySerializer], responses=KeyStatsSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = validated_query(SnapshotQuerySerializer, request)
        stats = snapshot(query["dimension"], query["window"])
        return self.get_paginated_response(page_of(self, [{"key": key, **asdict(entry)} for key, entry in stats.items()]))


@extend_schema(tags=["monitoring"])
class MetricsSeriesView(APIView):
    """One key's statistics per flush interval over the last minutes (at most an hour)."""

    @extend_schema(parameters=[SeriesQuerySerializer], responses=SeriesSerializer)
    def get(self, request: Request) -> Response:
        query = validated_query(SeriesQuerySerializer, request)
        interval = monitoring_settings.interval_seconds
        points = series(query["dimension"], query["key"], query["minutes"])
        return Response(
            {
                **query,
                "interval_seconds": interval,
                "points": [{**asdict(point), "throughput_rps": point.count / interval} for point in points],
            }
        )


@extend_schema(tags=["monitoring"])
class ProcessesView(APIView):
    """Every live gateway process's memory, CPU and in-flight exchanges, by name."""

    @extend_schema(responses=ProcessesSerializer)
    def get(self, request: Request) -> Response:
        return Response({"processes": [asdict(gauges) for gauges in process_gauges()]})
