"""Admin for rate-limit policies and API keys, and the admin login's own limit (django-ratelimit).

An API key's status (active, disabled, owner inactive, expired, revoked) is a coloured badge and a
list filter; the colours are classes in ``security/static/security/admin.css`` (the admin runs
under ``default-src 'self'``, so no inline style). Creating or rotating a key shows it once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django_ratelimit.core import is_ratelimited

from security.api_keys import DISABLED, EXPIRED, OWNER_INACTIVE, REVOKED, assign_new_secret, revoke_api_key, rotate_api_key
from security.conf import security_settings
from security.models import ApiKey, RateLimitPolicy

ADMIN_LOGIN_LIMITED_MESSAGE = "Too many login attempts from this address. Try again in a minute."


@admin.register(RateLimitPolicy)
class RateLimitPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name", "enabled", "algorithm", "scope", "limit", "window_seconds", "rate_per_second", "burst", "applies_to",
    ]
    list_filter = ["enabled", "algorithm", "scope", "routes"]
    search_fields = ["name", "routes__name"]
    filter_horizontal = ["routes"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "scope", "algorithm"]}),
        ("Sliding window", {"fields": ["limit", "window_seconds"]}),
        ("Token bucket", {"fields": ["rate_per_second", "burst"]}),
        ("Applies to", {"fields": ["routes"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RateLimitPolicy]:
        return super().get_queryset(request).prefetch_related("routes")

    @admin.display(description="applies to")
    def applies_to(self, policy: RateLimitPolicy) -> str:
        names = [route.name for route in policy.routes.all()]
        return ", ".join(names) if names else "every route"


def limit_login_attempts(login_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view: POSTs beyond GATEWAY_ADMIN_LOGIN_RATE_LIMIT per IP get 429."""

    def limited_login(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limited = is_ratelimited(
            request,
            group="admin-login",
            key="ip",
            rate=security_settings.admin_login_rate_limit,
            method="POST",
            increment=True,
        )
        if limited:
            return HttpResponse(ADMIN_LOGIN_LIMITED_MESSAGE, status=429, content_type="text/plain", headers={"Retry-After": "60"})
        return login_view(request, *args, **kwargs)

    return limited_login


# gateway_project/urls.py routes /admin/login/ here, ahead of admin.site.urls.
admin_login = limit_login_attempts(admin.site.login)


KEY_SHOWN_ONCE = "The API key {name} is {key} — copy it now: it is shown only this once."
ROTATED_KEY_SHOWN_ONCE = "The API key {name} was rotated; the new key is {key} — copy it now: it is shown only this once."
CANNOT_ROTATE_REVOKED = "The API key {name} is revoked and was not rotated."
KEYS_REVOKED = "{count} API key(s) revoked."

ACTIVE = "active"
KEY_STATUS_LABELS = {
    ACTIVE: "active",
    DISABLED: "disabled",
    OWNER_INACTIVE: "owner inactive",
    EXPIRED: "expired",
    REVOKED: "revoked",
}


def key_status(api_key: ApiKey, now: datetime) -> str:
    """Whether a caller presenting the key gets in, else why not, in the hot path's order
    (``CachedKey.refusal_reason``), so the badge names the refusal a caller would see."""
    if api_key.revoked_at is not None:
        return REVOKED
    if not api_key.enabled:
        return DISABLED
    if api_key.owner is not None and not api_key.owner.is_active:
        return OWNER_INACTIVE
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return EXPIRED
    return ACTIVE


def keys_with_status(queryset: QuerySet[ApiKey], status: str, now: datetime) -> QuerySet[ApiKey]:
    """``key_status`` as a query, for the list filter."""
    if status == REVOKED:
        return queryset.filter(revoked_at__isnull=False)
    if status == DISABLED:
        return queryset.filter(revoked_at__isnull=True, enabled=False)
    usable = queryset.filter(revoked_at__isnull=True, enabled=True)
    if status == OWNER_INACTIVE:
        return usable.filter(owner__is_active=False)
    usable = usable.exclude(owner__is_active=False)  # keys without an owner stay
    if status == EXPIRED:
        return usable.filter(expires_at__lte=now)
    if status == ACTIVE:
        return usable.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    return queryset


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(status, label.capitalize()) for status, label in KEY_STATUS_LABELS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        return keys_with_status(queryset, self.value() or "", timezone.now())


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name", "visible_prefix", "status", "owner", "expires_at", "last_used_at", "request_count", "average_latency",
    ]
    list_filter = [KeyStatusFilter, "owner"]
    list_select_related = ["owner"]
    search_fields = ["name", "key_prefix", "owner__username"]
    actions = ["rotate_keys", "revoke_keys"]
    fields = [
        "name", "owner", "permissions", "expires_at", "enabled", "per_minute_limit", "per_hour_limit", "per_day_limit",
        "visible_prefix", "revoked_at", "created_at", "last_used_at", "request_count", "average_latency",
    ]
    readonly_fields = ["visible_prefix", "revoked_at", "created_at", "last_used_at", "request_count", "average_latency"]

    class Media:
        css = {"all": ["security/admin.css"]}

    @admin.display(description="status")
    def status(self, api_key: ApiKey) -> SafeString:
        status = key_status(api_key, timezone.now())
        return format_html('<span class="api-key-status api-key-status-{}">{}</span>', status, KEY_STATUS_LABELS[status])

    @admin.display(description="prefix", ordering="key_prefix")
    def visible_prefix(self, api_key: ApiKey) -> str:
        return f"mgw_{api_key.key_prefix}…" if api_key.key_prefix else "-"

    @admin.display(description="avg latency (ms)")
    def average_latency(self, api_key: ApiKey) -> str:
        average = api_key.average_latency_ms
        return "-" if average is None else f"{average:.1f}"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key = assign_new_secret(obj)
        super().save_model(request, obj, form, change)
        messages.warning(request, KEY_SHOWN_ONCE.format(name=obj.name, key=key))

    @admin.action(description="Rotate the selected keys (new secret, shown once)")
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            if api_key.revoked_at is not None:
                messages.error(request, CANNOT_ROTATE_REVOKED.format(name=api_key.name))
                continue
            key = rotate_api_key(api_key)
            messages.warning(request, ROTATED_KEY_SHOWN_ONCE.format(name=api_key.name, key=key))

    @admin.action(description="Revoke the selected keys (permanent)")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            revoke_api_key(api_key)
            count += 1
        messages.success(request, KEYS_REVOKED.format(count=count))
