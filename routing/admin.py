"""Admin for services (with their targets inline) and routes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from gateway_project.state import StateStoreUnavailable
from routing.models import Route, Service, Target
from routing.target_status import LiveStatus, live_statuses
from routing.tester import RouteTesterForm, explain_request


class TargetForm(forms.ModelForm):
    """Keeps the upstream credential write-only: never shown, kept when left blank."""

    upstream_auth_value = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the current value.",
    )
    clear_upstream_auth = forms.BooleanField(required=False, label="Clear the stored credential")

    class Meta:
        model = Target
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_upstream_auth"):
            cleaned["upstream_auth_value"] = ""
        elif not cleaned.get("upstream_auth_value") and self.instance.pk:
            cleaned["upstream_auth_value"] = self.instance.upstream_auth_value
        return cleaned


class TargetInline(admin.TabularInline):
    model = Target
    form = TargetForm
    extra = 0
    fields = (
        "url",
        "weight",
        "enabled",
        "healthy",
        "last_health_check",
        "response_time_ms",
        "active_connections",
        "upstream_auth_header",
        "upstream_auth_value",
        "clear_upstream_auth",
    )
    readonly_fields = ("healthy", "last_health_check", "response_time_ms", "active_connections")


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "lb_policy", "target_count", "healthy_targets", "updated_at")
    list_filter = ("kind", "lb_policy")
    search_fields = ("name", "targets__url")
    inlines = [TargetInline]
    fieldsets = (
        (None, {"fields": ("name", "kind", "lb_policy")}),
        ("Timeouts (seconds)", {"fields": ("connect_timeout", "request_timeout", "response_timeout")}),
        ("Retries", {"fields": ("max_retries", "retry_backoff_ms", "retry_backoff_max_ms", "retry_budget_percent")}),
        (
            "Circuit breaker",
            {"fields": ("circuit_failure_threshold", "circuit_window_seconds", "circuit_recovery_seconds", "circuit_half_open_probes")},
        ),
        (
            "Health checks",
            {
                "fields": (
                    "health_check_path",
                    "health_check_interval",
                    "health_check_timeout",
                    "healthy_threshold",
                    "unhealthy_threshold",
                    "passive_failure_threshold",
                    "passive_ejection_seconds",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("targets")

    @admin.display(description="targets")
    def target_count(self, service: Service) -> int:
        return len(service.targets.all())

    @admin.display(description="healthy")
    def healthy_targets(self, service: Service) -> str:
        targets = service.targets.all()
        return f"{sum(1 for t in targets if t.healthy and t.enabled)}/{len(targets)}"


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    form = TargetForm
    list_display = (
        "url",
        "service",
        "weight",
        "enabled",
        "healthy",
        "traffic",
        "in_flight",
        "last_health_check",
        "response_time_ms",
    )
    list_filter = ("enabled", "healthy", "service")
    search_fields = ("url", "service__name")
    list_select_related = ("service",)
    readonly_fields = ("healthy", "traffic", "in_flight", "last_health_check", "response_time_ms", "active_connections")

    def _status(self, target: Target) -> LiveStatus | None:
        """The hot path's current verdicts (a page of at most 100 rows: cheap enough per row)."""
        try:
            return live_statuses([target.pk])[target.pk]
        except StateStoreUnavailable:
            return None

    @admin.display(description="traffic (live)")
    def traffic(self, target: Target) -> str:
        status = self._status(target)
        return status.summary if status else "unknown (state store unavailable)"

    @admin.display(description="in flight")
    def in_flight(self, target: Target) -> int | str:
        status = self._status(target)
        return status.in_flight if status else "?"


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "path_match", "method_list", "priority", "enabled", "access", "service")
    list_filter = ("enabled", "allow_anonymous", "path_match", "service__kind", "service")
    search_fields = ("name", "path", "service__name")
    list_select_related = ("service",)
    fieldsets = (
        (None, {"fields": ("name", "enabled", "service", "priority")}),
        ("Match", {"fields": ("path", "path_match", "methods", "header_matchers", "query_matchers", "content_matchers")}),
        ("Rewrite", {"fields": ("path_rewrite",)}),
        ("Access", {"fields": ("allow_anonymous", "required_permissions", "tool_permissions")}),
        ("Resilience", {"fields": ("connect_timeout", "request_timeout", "response_timeout", "idempotent_tools")}),
        ("Input safety", {"fields": ("injection_detection", "sanitization", "cors_allowed_origins")}),
        ("Batching and fan-out", {"fields": ("upstream_batching", "fanout", "fanout_services")}),
    )

    @admin.display(description="access")
    def access(self, route: Route) -> str:
        if route.allow_anonymous:
            return "open"
        return "permissions" if route.required_permissions or route.tool_permissions else "credential"

    @admin.display(description="methods")
    def method_list(self, route: Route) -> str:
        return ", ".join(route.methods) if route.methods else "any"

    def get_urls(self) -> list[URLPattern]:
        tester = path("tester/", self.admin_site.admin_view(self.tester_view), name="routing_route_tester")
        return [tester, *super().get_urls()]

    def tester_view(self, request: HttpRequest) -> HttpResponse:
        """Which route and targets a typed-in request would reach (nothing is sent)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = RouteTesterForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            result = explain_request(data["method"], data["path"], data["headers"], data["body"])
        context = {**self.admin_site.each_context(request), "title": "Route tester", "form": form, "result": result, "opts": self.model._meta}
        return TemplateResponse(request, "admin/routing/route/tester.html", context)
