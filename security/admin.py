"""Admin for rate-limit policies, and the admin login's own limit (django-ratelimit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django_ratelimit.core import is_ratelimited

from security.conf import security_settings
from security.models import RateLimitPolicy

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
