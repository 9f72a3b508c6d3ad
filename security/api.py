"""The REST API of security: rate-limit policies and API keys.

    /api/v1/rate-limit-policies/       ?enabled=true&scope=ip&algorithm=token_bucket
    /api/v1/api-keys/                  ?enabled=true&revoked=false&owner=<username>
    /api/v1/api-keys/{id}/rotate/      POST: a new secret, shown once; the old one stops at once
    /api/v1/api-keys/{id}/revoke/      POST: refused from now on, for good

An API key's secret exists in clear exactly twice: in the answer that creates it and in the
answer that rotates it (``{"key": "mgw_…"}``). Every other answer shows its visible prefix only.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gateway_project.api import Conflict, is_active_staff
from gateway_project.api_models import CleanedModelSerializer, ConfigModelViewSet
from routing.models import Route
from security.api_keys import issue_api_key, revoke_api_key, rotate_api_key
from security.models import ApiKey, RateLimitPolicy

REVOKED_KEY_NOT_ROTATED = "This key is revoked; rotating it would not bring it back. Create a new key."


class RateLimitPolicySerializer(CleanedModelSerializer):
    """A sliding window or token bucket, counted per IP, user, API key, route or tool."""

    routes = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Route.objects.all(),
        many=True,
        required=False,
        help_text="Names of the routes this policy applies to; empty: every route.",
    )

    class Meta:
        model = RateLimitPolicy
        fields = "__all__"


class ApiKeySerializer(CleanedModelSerializer):
    """A client credential with its own grants, expiry and limits; only its prefix is ever shown here."""

    owner = serializers.SlugRelatedField(
        slug_field=get_user_model().USERNAME_FIELD,
        queryset=get_user_model().objects.all(),
        required=False,
        allow_null=True,
        help_text="The owner's username; by default the user creating the key.",
    )
    average_latency_ms = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = ApiKey
        exclude = ["key_hash"]
        read_only_fields = ["key_prefix", "revoked_at", "created_at", "last_used_at", "request_count", "latency_total_ms"]


class IssuedApiKeySerializer(ApiKeySerializer):
    """An API key together with its secret: only in the answers to create and rotate."""

    key = serializers.CharField(read_only=True, help_text="The key itself (mgw_…). Shown this once; store it now.")


class RateLimitPolicyFilter(django_filters.FilterSet):
    class Meta:
        model = RateLimitPolicy
        fields = ["enabled", "scope", "algorithm"]


class ApiKeyFilter(django_filters.FilterSet):
    owner = django_filters.CharFilter(field_name="owner__username", help_text="The owner's username.")
    revoked = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = ApiKey
        fields = ["enabled", "owner", "revoked"]


@extend_schema(tags=["security"])
class RateLimitPolicyViewSet(ConfigModelViewSet):
    """Rate-limit policies: sliding windows or token buckets per IP, user, key, route or tool."""

    queryset = RateLimitPolicy.objects.prefetch_related("routes")
    serializer_class = RateLimitPolicySerializer
    filterset_class = RateLimitPolicyFilter


@extend_schema(tags=["security"])
class ApiKeyViewSet(ConfigModelViewSet):
    """API keys: client credentials with their own grants, expiry and per-key limits."""

    serializer_class = ApiKeySerializer
    filterset_class = ApiKeyFilter

    def get_queryset(self) -> QuerySet[ApiKey]:
        return ApiKey.objects.select_related("owner")

    @extend_schema(responses={201: IssuedApiKeySerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a key; the answer carries the key itself, once."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if "owner" not in fields and is_active_staff(request.user):
            fields["owner"] = request.user
        with transaction.atomic():
            api_key, key = issue_api_key(**fields)
        return Response(issued(api_key, key), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: IssuedApiKeySerializer, 409: OpenApiResponse(description="The key is revoked.")})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str | None = None) -> Response:
        """Give the key a new secret, shown once in this answer; the old one stops working at once.
        Grants, limits and usage stay with the key."""
        api_key = self.get_object()
        if api_key.revoked_at is not None:
            raise Conflict(REVOKED_KEY_NOT_ROTATED)
        with transaction.atomic():
            key = rotate_api_key(api_key)
        return Response(issued(api_key, key))

    @extend_schema(request=None, responses={200: ApiKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Refuse the key from now on, for good. Revoking a revoked key changes nothing."""
        api_key = self.get_object()
        if api_key.revoked_at is None:
            with transaction.atomic():
                revoke_api_key(api_key)
        return Response(ApiKeySerializer(api_key).data)


def issued(api_key: ApiKey, key: str) -> dict[str, Any]:
    return {**ApiKeySerializer(api_key).data, "key": key}
