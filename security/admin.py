"""Admin for rate-limit policies and API keys, and the admin login's own limit (django-ratelimit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django_ratelimit.core import is_ratelimited

from security.conf import security_settings
from security.api_keys import assign_new_secret, revoke_api_key, rotate_api_key
from security.models import ApiKey, RateLimitPolicy

ADMIN_LOGIN_LIMITED_MESSAGE = "Too many login attempts from this address. Try again in a minute."


@admin.register(RateLimitPolicy)
class RateLimitPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "algorithm", "scope", "limit", "window_seconds", "rate_per_second", "burst"]
    list_filter = ["enabled", "algorithm", "scope"]
    search_fields = ["name"]
    filter_horizontal = ["routes"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "scope", "algorithm"]}),
        ("Sliding window", {"fields": ["limit", "window_seconds"]}),
        ("Token bucket", {"fields": ["rate_per_second", "burst"]}),
        ("Applies to", {"fields": ["routes"]}),
    ]


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name", "visible_prefix", "owner", "enabled", "expires_at", "last_used_at", "request_count", "average_latency",
    ]
    list_filter = ["enabled", "owner"]
    search_fields = ["name", "key_prefix"]
    actions = ["rotate_keys", "revoke_keys"]
    fields = [
        "name", "owner", "permissions", "expires_at", "enabled", "per_minute_limit", "per_hour_limit", "per_day_limit",
        "visible_prefix", "revoked_at", "created_at", "last_used_at", "request_count", "average_latency",
    ]
    readonly_fields = ["visible_prefix", "revoked_at", "created_at", "last_used_at", "request_count", "average_latency"]

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
