"""The REST API of performance: the response cache's policies and statistics.

    /api/v1/cache-policies/             ?route=<name>&enabled=true
    /api/v1/cache-policies/{id}/purge/  POST: drop every cached answer of the policy's route
    /api/v1/cache-stats/                hits, misses, evictions, size, hit and miss rates
"""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.api_models import CleanedModelSerializer, ConfigModelViewSet
from performance.cache import cache_stats, purge_route
from performance.models import ResponseCachePolicy
from routing.models import Route


class ResponseCachePolicySerializer(CleanedModelSerializer):
    """A route's opt-in to the response cache."""

    route = serializers.SlugRelatedField(slug_field="name", queryset=Route.objects.all(), help_text="The route's name.")

    class Meta:
        model = ResponseCachePolicy
        fields = "__all__"


class PurgeSerializer(serializers.Serializer):
    purged = serializers.IntegerField(help_text="How many cached answers were dropped.")


class CacheStatsSerializer(serializers.Serializer):
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    evictions = serializers.IntegerField()
    size = serializers.IntegerField(help_text="Answers held now.")
    hit_rate = serializers.FloatField()
    miss_rate = serializers.FloatField()


class ResponseCachePolicyFilter(django_filters.FilterSet):
    route = django_filters.CharFilter(field_name="route__name", help_text="The route's name.")

    class Meta:
        model = ResponseCachePolicy
        fields = ["route", "enabled"]


@extend_schema(tags=["performance"])
class ResponseCachePolicyViewSet(ConfigModelViewSet):
    """Response-cache policies: a route's opt-in to the cache, with a TTL of 300 to 3600 s."""

    queryset = ResponseCachePolicy.objects.select_related("route")
    serializer_class = ResponseCachePolicySerializer
    filterset_class = ResponseCachePolicyFilter

    @extend_schema(request=None, responses=PurgeSerializer)
    @action(detail=True, methods=["post"])
    def purge(self, request: Request, pk: str | None = None) -> Response:
        """Drop every cached answer of this policy's route, in every process."""
        policy = self.get_object()
        return Response({"purged": purge_route(policy.route_id)})


@extend_schema(tags=["performance"])
class CacheStatsView(APIView):
    """The response cache's counters, across processes since they began."""

    @extend_schema(responses=CacheStatsSerializer)
    def get(self, request: Request) -> Response:
        return Response(cache_stats())
