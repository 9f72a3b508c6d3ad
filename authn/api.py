"""The REST API of authn: gateway sessions, roles and external identity providers.

    /api/v1/sessions/                  ?active=true&user=<username>   (read-only)
    /api/v1/sessions/{id}/end/         POST: the session's tokens stop in every process at once
    /api/v1/roles/                     named grant lists, held by users (by username)
    /api/v1/identity-providers/        external OIDC issuers whose tokens the gateway accepts

Session rows mirror the live copies in the state store and trail them by up to one flush
(``authn/sessions.py``); ending one goes through the live copy, so it takes effect at once.
"""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from authn.models import GatewaySession, IdentityProvider, Role
from authn.sessions import end_session
from gateway_project.api import Conflict
from gateway_project.api_models import CleanedModelSerializer, ConfigModelViewSet

SESSION_NOT_LIVE = "This session has already ended or expired"


class SessionSerializer(serializers.ModelSerializer):
    """A login (gateway session): its tokens work while it is active."""

    user = serializers.SlugRelatedField(slug_field=get_user_model().USERNAME_FIELD, read_only=True)
    active = serializers.SerializerMethodField(help_text="Not ended and not past its expiry (as of the last flush).")

    class Meta:
        model = GatewaySession
        fields = [
            "id",
            "user",
            "active",
            "created_at",
            "last_activity_at",
            "expires_at",
            "ended_at",
            "client_ip",
            "user_agent",
            "metadata",
        ]
        read_only_fields = fields

    def get_active(self, session: GatewaySession) -> bool:
        return session.ended_at is None and session.expires_at > timezone.now()


class RoleSerializer(CleanedModelSerializer):
    """A named list of grants, held by users."""

    users = serializers.SlugRelatedField(
        slug_field=get_user_model().USERNAME_FIELD,
        queryset=get_user_model().objects.all(),
        many=True,
        required=False,
        help_text="Usernames of the users holding this role.",
    )

    class Meta:
        model = Role
        fields = "__all__"


class IdentityProviderSerializer(CleanedModelSerializer):
    """An external OIDC issuer whose access tokens the gateway accepts."""

    class Meta:
        model = IdentityProvider
        fields = "__all__"


class SessionFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(method="filter_active", help_text="Live sessions (true) or ended ones (false).")
    user = django_filters.CharFilter(field_name="user__username", help_text="The user's username.")

    class Meta:
        model = GatewaySession
        fields = ["active", "user"]

    def filter_active(self, queryset: QuerySet[GatewaySession], name: str, value: bool) -> QuerySet[GatewaySession]:
        live = Q(ended_at__isnull=True, expires_at__gt=timezone.now())
        return queryset.filter(live) if value else queryset.exclude(live)


class IdentityProviderFilter(django_filters.FilterSet):
    class Meta:
        model = IdentityProvider
        fields = ["enabled"]


@extend_schema(tags=["authn"])
class SessionViewSet(viewsets.ReadOnlyModelViewSet):
    """Gateway sessions (logins). Sessions are opened by POST /api/v1/auth/token/ only."""

    queryset = GatewaySession.objects.select_related("user")
    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    # Session ids are token_urlsafe; anything else is no session (and PostgreSQL refuses NUL).
    lookup_value_regex = r"[A-Za-z0-9_-]+"

    @extend_schema(request=None, responses={200: SessionSerializer, 409: OpenApiResponse(description=SESSION_NOT_LIVE + ".")})
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        """End the session now: its access and refresh tokens stop working everywhere."""
        session = self.get_object()
        if not end_session(session.pk):
            raise Conflict(SESSION_NOT_LIVE)
        session.refresh_from_db()
        return Response(SessionSerializer(session).data)


@extend_schema(tags=["authn"])
class RoleViewSet(ConfigModelViewSet):
    """Roles: named lists of grants; a user holds the union of their roles' grants."""

    queryset = Role.objects.prefetch_related("users")
    serializer_class = RoleSerializer


@extend_schema(tags=["authn"])
class IdentityProviderViewSet(ConfigModelViewSet):
    """External OAuth 2.1 / OIDC issuers whose access tokens the gateway accepts."""

    queryset = IdentityProvider.objects.all()
    serializer_class = IdentityProviderSerializer
    filterset_class = IdentityProviderFilter
