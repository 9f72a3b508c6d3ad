"""Admin for gateway sessions (read-only, with an action that ends them), roles and identity providers.

A session row is the database's mirror of the live copy in the state store (``authn/sessions.py``):
its activity and status are as of the worker's last flush, at most ~30 s old. Rows are never
added or edited here, nor deleted: a deleted row would leave its live copy (and its tokens)
running with nothing left to show or end them. Ending goes through ``end_session``, which stops
the session's tokens in every process at once.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, F, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from authn.models import GatewaySession, IdentityProvider, Role
from authn.sessions import end_session
from gateway_project.state import StateStoreUnavailable

ACTIVE = "active"
ENDED = "ended"
EXPIRED = "expired"

SHORT_ID_LENGTH = 8
USER_AGENT_SHOWN_LENGTH = 60

SESSIONS_ENDED = "{count} session(s) ended; their tokens no longer work."
SESSIONS_NOT_ENDED = "The state store is unavailable: no session was ended, their tokens still work. Try again."


def session_status(session: GatewaySession, now: datetime) -> str:
    """Active, ended (before its expiry: logout, admin, deactivated user) or expired.

    The jobs record an expiry as ``ended_at == expires_at``; an end before it is a real end.
    """
    if session.ended_at is None:
        return ACTIVE if session.expires_at > now else EXPIRED
    return ENDED if session.ended_at < session.expires_at else EXPIRED


def sessions_with_status(queryset: QuerySet[GatewaySession], status: str, now: datetime) -> QuerySet[GatewaySession]:
    """``session_status`` as a query, for the list filter."""
    if status == ACTIVE:
        return queryset.filter(ended_at__isnull=True, expires_at__gt=now)
    if status == ENDED:
        return queryset.filter(ended_at__isnull=False, ended_at__lt=F("expires_at"))
    if status == EXPIRED:
        return queryset.filter(Q(ended_at__isnull=True, expires_at__lte=now) | Q(ended_at__gte=F("expires_at")))
    return queryset


class SessionStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(ACTIVE, "Active"), (ENDED, "Ended"), (EXPIRED, "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[GatewaySession]) -> QuerySet[GatewaySession]:
        return sessions_with_status(queryset, self.value() or "", timezone.now())


@admin.register(GatewaySession)
class GatewaySessionAdmin(admin.ModelAdmin):
    list_display = [
        "user", "short_id", "status", "client_ip", "short_user_agent", "created_at", "last_activity_at", "expires_at",
    ]
    list_filter = [SessionStatusFilter, "user"]
    # "^id": a prefix, so the short id shown in the list finds its session.
    search_fields = ["user__username", "client_ip", "^id"]
    list_select_related = ["user"]
    actions = ["end_sessions"]
    fields = (
        "id", "user", "status", "created_at", "last_activity_at", "expires_at", "ended_at", "client_ip", "user_agent",
        "metadata",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["authn/sessions_admin.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: GatewaySession | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: GatewaySession | None = None) -> bool:
        return False

    def has_end_permission(self, request: HttpRequest) -> bool:
        """Ending a session is the one change this admin makes; it needs the change permission."""
        return request.user.has_perm("authn.change_gatewaysession")

    @admin.display(description="id", ordering="id")
    def short_id(self, session: GatewaySession) -> str:
        return f"{session.id[:SHORT_ID_LENGTH]}…"

    @admin.display(description="status")
    def status(self, session: GatewaySession) -> SafeString:
        status = session_status(session, timezone.now())
        return format_html('<span class="session-status session-status-{}">{}</span>', status, status)

    @admin.display(description="user agent", ordering="user_agent")
    def short_user_agent(self, session: GatewaySession) -> str:
        agent = session.user_agent
        return agent if len(agent) <= USER_AGENT_SHOWN_LENGTH else f"{agent[:USER_AGENT_SHOWN_LENGTH]}…"

    @admin.action(description="End selected sessions", permissions=["end"])
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[GatewaySession]) -> None:
        session_ids = list(queryset.filter(ended_at__isnull=True).values_list("id", flat=True))
        try:
            count = sum(end_session(session_id) for session_id in session_ids)
        except StateStoreUnavailable:
            messages.error(request, SESSIONS_NOT_ENDED)
            return
        messages.success(request, SESSIONS_ENDED.format(count=count))


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    """Grants are validated by ``Role.clean()``, so a bad one is a message beside the field."""

    list_display = ["name", "description", "grant_count", "user_count"]
    search_fields = ["name", "description", "users__username"]
    filter_horizontal = ["users"]
    fields = ["name", "description", "permissions", "users"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return super().get_queryset(request).annotate(user_total=Count("users", distinct=True))

    @admin.display(description="grants")
    def grant_count(self, role: Role) -> int:
        return len(role.permissions) if isinstance(role.permissions, list) else 0

    @admin.display(description="users", ordering="user_total")
    def user_count(self, role: Role) -> int:
        return getattr(role, "user_total", 0)


@admin.register(IdentityProvider)
class IdentityProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "issuer", "enabled", "audience"]
    list_filter = ["enabled"]
    search_fields = ["name", "issuer", "audience"]
    # Issuers and JWKS are https; a URL typed without a scheme means that, not http.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "enabled", "issuer", "jwks_url", "audience", "algorithms"]}),
        ("Claims", {"fields": ["subject_claim", "roles_claim", "role_map", "permissions_claim"]}),
    ]
