"""Admin for services (targets inline), targets, and routes (cache and rate-limit policies inline).

The lists show what the hot path believes right now: each target's health and circuit as a
coloured badge, its active connections, its last check and response time. The colours are
classes in ``routing/static/routing/admin.css``: the admin is served under ``default-src 'self'``,
which forbids inline style.

Actions: enable or disable routes and targets (saved, so every process sees the change at once),
run a health check now, purge a route's cached answers. A route whose path and methods overlap
another enabled route of the same priority is saved, with a warning naming the other one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.safestring import SafeString

from performance.admin import purge_routes
from performance.models import ResponseCachePolicy
from routing.admin_health import BAD, OFF, OK, STYLESHEET, WARN, TargetStatusColumns, badge, run_health_checks_now
from routing.models import Route, Service, ServiceKind, Target, validate_upstream_url
from routing.overlaps import overlap_warnings
from routing.tester import RouteTesterForm, explain_request
from security.models import Algorithm, RateLimitPolicy

BAD_URL_MESSAGE = "Enter the target's base URL starting with http:// or https://, e.g. http://10.0.0.5:9100/mcp."
WEIGHT_TOO_LOW_MESSAGE = (
    "Give a weight of 1 or more: each target gets a share of traffic in proportion to its weight. "
    "To send a target nothing, untick enabled instead."
)
ENABLED_MESSAGE = "Enabled {count} {kind}(s): {names}."
DISABLED_MESSAGE = "Disabled {count} {kind}(s): {names}. They take no new requests from now on."
NOTHING_CHANGED_MESSAGE = "Every selected {kind} was already {state}."

# --- targets -------------------------------------------------------------------------------------


class TargetForm(forms.ModelForm):
    """Keeps the upstream credential write-only (never shown, kept when left blank), and words
    the URL and weight errors as what to type instead."""

    weight = forms.IntegerField(initial=1, min_value=1, error_messages={"min_value": WEIGHT_TOO_LOW_MESSAGE})
    upstream_auth_value = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the current value.",
    )
    clear_upstream_auth = forms.BooleanField(required=False, label="Clear the stored credential")

    class Meta:
        model = Target
        fields = "__all__"

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"].strip()
        try:
            validate_upstream_url(url)
        except ValidationError:
            raise ValidationError(BAD_URL_MESSAGE) from None
        return url

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_upstream_auth"):
            cleaned["upstream_auth_value"] = ""
        elif not cleaned.get("upstream_auth_value") and self.instance.pk:
            cleaned["upstream_auth_value"] = self.instance.upstream_auth_value
        return cleaned


class TargetInline(TargetStatusColumns, admin.TabularInline):
    model = Target
    form = TargetForm
    extra = 0
    fields = (
        "url",
        "weight",
        "enabled",
        "health",
        "circuit",
        "connections_now",
        "last_health_check",
        "response_time",
        "upstream_auth_header",
        "upstream_auth_value",
        "clear_upstream_auth",
    )
    readonly_fields = ("health", "circuit", "connections_now", "last_health_check", "response_time")


def set_enabled(model_admin: admin.ModelAdmin, request: HttpRequest, rows: QuerySet[Any], enabled: bool) -> list[Any]:
    """Enable or disable ``rows``; return those that changed.

    ``save()``, not ``update()``: its signal bumps the config version, so every gateway process
    rebuilds its snapshot and starts or stops using them at once.
    """
    changed = [row for row in rows if row.enabled != enabled]
    for row in changed:
        row.enabled = enabled
        row.save()
        model_admin.log_change(request, row, "Enabled" if enabled else "Disabled")
    return changed


def report_enabled(request: HttpRequest, kind: str, changed: Sequence[Any], enabled: bool) -> None:
    if not changed:
        messages.info(request, NOTHING_CHANGED_MESSAGE.format(kind=kind, state="enabled" if enabled else "disabled"))
        return
    template = ENABLED_MESSAGE if enabled else DISABLED_MESSAGE
    messages.success(request, template.format(count=len(changed), kind=kind, names=", ".join(map(str, changed))))


@admin.register(Target)
class TargetAdmin(TargetStatusColumns, admin.ModelAdmin):
    form = TargetForm
    list_display = (
        "url",
        "service",
        "weight",
        "enabled",
        "health",
        "circuit",
        "connections_now",
        "last_health_check",
        "response_time",
    )
    list_filter = ("enabled", "healthy", "service")
    search_fields = ("url", "service__name")
    list_select_related = ("service",)
    readonly_fields = ("health", "circuit", "connections_now", "last_health_check", "response_time")
    actions = ["check_health_now", "enable_targets", "disable_targets"]
    fields = (
        "service",
        "url",
        "weight",
        "enabled",
        "upstream_auth_header",
        "upstream_auth_value",
        "clear_upstream_auth",
        *readonly_fields,
    )

    class Media:
        css = {"all": [STYLESHEET]}

    @admin.action(description="Run a health check now")
    def check_health_now(self, request: HttpRequest, queryset: QuerySet[Target]) -> None:
        run_health_checks_now(request, list(queryset))

    @admin.action(description="Enable the selected targets")
    def enable_targets(self, request: HttpRequest, queryset: QuerySet[Target]) -> None:
        report_enabled(request, "target", set_enabled(self, request, queryset, True), True)

    @admin.action(description="Disable the selected targets (no new requests)")
    def disable_targets(self, request: HttpRequest, queryset: QuerySet[Target]) -> None:
        report_enabled(request, "target", set_enabled(self, request, queryset, False), False)


# --- services ------------------------------------------------------------------------------------


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "lb_policy", "target_count", "health", "updated_at")
    list_filter = ("kind", "lb_policy")
    search_fields = ("name", "targets__url")
    inlines = [TargetInline]
    actions = ["check_health_now"]
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

    class Media:
        css = {"all": [STYLESHEET]}

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("targets")

    @admin.display(description="targets")
    def target_count(self, service: Service) -> int:
        return len(service.targets.all())

    @admin.display(description="health")
    def health(self, service: Service) -> SafeString:
        # The rows' verdicts from the last checks: one query for the page, no state-store reads.
        if service.kind == ServiceKind.VIRTUAL:
            return badge(OFF, "served by the gateway")
        enabled = [target for target in service.targets.all() if target.enabled]
        if not enabled:
            return badge(BAD, "no enabled targets", "Requests to its routes get 503.")
        healthy = sum(1 for target in enabled if target.healthy)
        tone = OK if healthy == len(enabled) else BAD if healthy == 0 else WARN
        return badge(tone, f"{healthy}/{len(enabled)} healthy")

    @admin.action(description="Run a health check of every target now")
    def check_health_now(self, request: HttpRequest, queryset: QuerySet[Service]) -> None:
        run_health_checks_now(request, list(Target.objects.filter(service__in=queryset)))


# --- routes --------------------------------------------------------------------------------------


class ResponseCachePolicyInline(admin.StackedInline):
    model = ResponseCachePolicy
    extra = 0
    max_num = 1
    verbose_name = "response cache"
    fields = ("enabled", "ttl_seconds", "cacheable_tools")


class RateLimitPolicyInline(admin.TabularInline):
    """The route's side of ``RateLimitPolicy.routes``: the policies attached to this route."""

    model = RateLimitPolicy.routes.through
    extra = 0
    verbose_name = "rate-limit policy"
    verbose_name_plural = "rate-limit policies attached to this route"
    # The stylesheet hides the link rows' own names ("RateLimitPolicy_routes object (3)").
    classes = ["route-rate-limits"]
    fields = ("ratelimitpolicy", "policy_limit")
    readonly_fields = ("policy_limit",)

    @admin.display(description="limit")
    def policy_limit(self, link: Any) -> str:
        if not link.pk:
            return "-"
        policy: RateLimitPolicy = link.ratelimitpolicy
        if policy.algorithm == Algorithm.SLIDING_WINDOW:
            allowance = f"{policy.limit} requests per {policy.window_seconds or 0:g} s"
        else:
            allowance = f"{policy.rate_per_second or 0:g}/s, bursts of {policy.burst}"
        return f"{allowance}, {policy.get_scope_display().lower()}{'' if policy.enabled else ' (disabled)'}"


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "path_match", "method_list", "priority", "enabled", "access", "service")
    list_filter = ("enabled", "allow_anonymous", "path_match", "service__kind", "service")
    search_fields = ("name", "path", "service__name")
    list_select_related = ("service",)
    inlines = [ResponseCachePolicyInline, RateLimitPolicyInline]
    actions = ["enable_routes", "disable_routes", "purge_cached_answers"]
    readonly_fields = ("policies_on_every_route",)
    fieldsets = (
        (None, {"fields": ("name", "enabled", "service", "priority")}),
        ("Match", {"fields": ("path", "path_match", "methods", "header_matchers", "query_matchers", "content_matchers")}),
        ("Rewrite", {"fields": ("path_rewrite",)}),
        ("Access", {"fields": ("allow_anonymous", "required_permissions", "tool_permissions")}),
        ("Resilience", {"fields": ("connect_timeout", "request_timeout", "response_timeout", "idempotent_tools")}),
        ("Input safety", {"fields": ("injection_detection", "sanitization", "cors_allowed_origins")}),
        ("Batching and fan-out", {"fields": ("upstream_batching", "fanout", "fanout_services")}),
        (
            "Rate limits",
            {
                "fields": ("policies_on_every_route",),
                "description": "A policy attached to no route applies to every route. Attaching it to this "
                "route below narrows it to the routes it lists.",
            },
        ),
    )

    class Media:
        css = {"all": [STYLESHEET]}

    @admin.display(description="access")
    def access(self, route: Route) -> str:
        if route.allow_anonymous:
            return "open"
        return "permissions" if route.required_permissions or route.tool_permissions else "credential"

    @admin.display(description="methods")
    def method_list(self, route: Route) -> str:
        return ", ".join(route.methods) if route.methods else "any"

    @admin.display(description="policies on every route")
    def policies_on_every_route(self, route: Route) -> str:
        names = RateLimitPolicy.objects.filter(enabled=True, routes__isnull=True).values_list("name", flat=True)
        return ", ".join(names) or "none"

    def save_model(self, request: HttpRequest, obj: Route, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        for warning in overlap_warnings(obj):
            messages.warning(request, warning)

    @admin.action(description="Enable the selected routes")
    def enable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        changed = set_enabled(self, request, queryset, True)
        report_enabled(request, "route", changed, True)
        for route in changed:
            for warning in overlap_warnings(route):
                messages.warning(request, warning)

    @admin.action(description="Disable the selected routes (they stop matching at once)")
    def disable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        report_enabled(request, "route", set_enabled(self, request, queryset, False), False)

    @admin.action(description="Purge the selected routes' cached answers")
    def purge_cached_answers(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        purge_routes(request, list(queryset.values_list("pk", flat=True)))

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
