"""The REST API of routing: services, their targets, routes, and the live health of it all.

    /api/v1/services/        ?kind=<kind>&lb_policy=<policy>
    /api/v1/targets/         ?service=<name>&enabled=true&healthy=false
    /api/v1/routes/          ?service=<name>&enabled=true&path_match=prefix
    /api/v1/health/          readiness plus every target's live status (read-only)

Objects refer to each other by name (a target's and a route's ``service``), as in the admin
and in exported configuration. A target's upstream credential is write-only: answers say
whether one is set, never what it is.
"""

from __future__ import annotations

import json
from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project import health
from gateway_project.api_models import CleanedModelSerializer, ConfigModelViewSet
from gateway_project.state import StateStoreUnavailable
from routing.models import Route, Service, Target
from routing.target_status import live_statuses

# Written by the health checker and the balancer, never by a person.
TARGET_RUNTIME_FIELDS = ("healthy", "last_health_check", "response_time_ms", "active_connections")


class ServiceSerializer(CleanedModelSerializer):
    """A named group of interchangeable targets: balancing, timeouts, retries, circuit breaker, health checks."""

    class Meta:
        model = Service
        fields = "__all__"


class TargetSerializer(CleanedModelSerializer):
    """One upstream endpoint of a service. Its credential is write-only; health state is read-only."""

    service = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all())
    upstream_auth_value = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="The credential sent to the upstream in upstream_auth_header; never shown again. "
        "Leave it out to keep the current one, send an empty string to remove it.",
    )
    upstream_auth_value_set = serializers.SerializerMethodField(help_text="Whether an upstream credential is set.")

    class Meta:
        model = Target
        fields = "__all__"
        read_only_fields = TARGET_RUNTIME_FIELDS

    def get_upstream_auth_value_set(self, target: Target) -> bool:
        return bool(target.upstream_auth_value)


class RouteSerializer(CleanedModelSerializer):
    """Which requests go to which service: path, methods, matchers, and the route's own checks and timeouts."""

    service = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all())

    class Meta:
        model = Route
        fields = "__all__"


class ServiceFilter(django_filters.FilterSet):
    class Meta:
        model = Service
        fields = ["kind", "lb_policy"]


class TargetFilter(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__name", help_text="The service's name.")

    class Meta:
        model = Target
        fields = ["service", "enabled", "healthy"]


class RouteFilter(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__name", help_text="The service's name.")

    class Meta:
        model = Route
        fields = ["service", "enabled", "path_match", "allow_anonymous"]


@extend_schema(tags=["routing"])
class ServiceViewSet(ConfigModelViewSet):
    """Services: named groups of interchangeable targets, with balancing, timeouts and retries.
    A service that routes still use cannot be deleted (409)."""

    queryset = Service.objects.all()
    serializer_class = ServiceSerializer
    filterset_class = ServiceFilter


@extend_schema(tags=["routing"])
class TargetViewSet(ConfigModelViewSet):
    """Targets: the upstream endpoints of a service."""

    queryset = Target.objects.select_related("service")
    serializer_class = TargetSerializer
    filterset_class = TargetFilter


@extend_schema(tags=["routing"])
class RouteViewSet(ConfigModelViewSet):
    """Routes: which requests go to which service; the highest priority matching route wins."""

    queryset = Route.objects.select_related("service")
    serializer_class = RouteSerializer
    filterset_class = RouteFilter


# --- health ----------------------------------------------------------------------------------------


class LiveStatusSerializer(serializers.Serializer):
    down = serializers.BooleanField(help_text="Failed active health checks.")
    ejected = serializers.BooleanField(help_text="Failing live traffic (passive checks), for a cool-down.")
    circuit = serializers.CharField(help_text="closed, open or half_open.")
    in_flight = serializers.IntegerField()
    summary = serializers.CharField()


class TargetHealthSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    service = serializers.CharField()
    url = serializers.CharField()
    enabled = serializers.BooleanField()
    healthy = serializers.BooleanField(help_text="The last verdict written to the database.")
    live = LiveStatusSerializer(allow_null=True, help_text="What the hot path believes now; null when the state store is down.")


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready", "unavailable"])
    failing = serializers.ListField(child=serializers.CharField())
    checks = serializers.DictField(child=serializers.CharField())
    targets = TargetHealthSerializer(many=True)


@extend_schema(tags=["health"])
class HealthView(APIView):
    """The gateway's readiness (database, state store) and every target's live status.

    Always 200: this is the operator's view. Load balancers ask ``/readyz``, which answers 503
    when a part fails.
    """

    @extend_schema(responses=HealthSerializer)
    def get(self, request: Request) -> Response:
        readiness = json.loads(health.readyz(request._request).content)  # one definition of "ready"
        targets = list(Target.objects.select_related("service").order_by("service__name", "url"))
        statuses = live_statuses_or_none([target.pk for target in targets])
        return Response({**readiness, "targets": [target_health(target, statuses) for target in targets]})


def live_statuses_or_none(target_ids: list[int]) -> dict[int, Any] | None:
    try:
        return live_statuses(target_ids)
    except StateStoreUnavailable:
        return None


def target_health(target: Target, statuses: dict[int, Any] | None) -> dict[str, Any]:
    status = statuses.get(target.pk) if statuses is not None else None
    live = None
    if status is not None:
        live = {
            "down": status.down,
            "ejected": status.ejected,
            "circuit": status.circuit,
            "in_flight": status.in_flight,
            "summary": status.summary,
        }
    return {
        "id": target.pk,
        "service": target.service.name,
        "url": target.url,
        "enabled": target.enabled,
        "healthy": target.healthy,
        "live": live,
    }

