"""Admin for virtual servers: members, their exposure rules, approvals and pinning alerts.

A virtual server's page links to its route (access settings live there), shows what its
catalog holds now (members down, tools held back), and offers two buttons: refresh the
members' lists now, and review and approve the current tool definitions (a diff of each
changed tool against its approval).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from federation import approval, member_lists
from federation.catalog import current_catalog
from federation.models import ApprovedTool, ExposureRule, Member, PinningAlert, VirtualServer
from federation.snapshot import compile_virtual_server, virtual_server_for_service


class MemberInline(admin.TabularInline):
    model = Member
    extra = 0
    fields = ("service", "prefix", "unlisted_items", "session_scope", "position", "rules_link")
    readonly_fields = ("rules_link",)

    @admin.display(description="rules")
    def rules_link(self, member: Member) -> str:
        if not member.pk:
            return "save first"
        url = reverse("admin:federation_member_change", args=[member.pk])
        return format_html('<a href="{}">{} rule(s)</a>', url, member.rules.count())


@admin.register(VirtualServer)
class VirtualServerAdmin(admin.ModelAdmin):
    list_display = ("name", "served_path", "enabled", "pinning_policy", "member_count", "open_alerts", "approved_at")
    list_filter = ("enabled", "pinning_policy")
    search_fields = ("name", "path")
    inlines = [MemberInline]
    readonly_fields = ("route_link", "catalog_status", "approved_at", "approved_by")
    fields = ("name", "path", "enabled", "instructions", "pinning_policy", "route_link", "catalog_status", "approved_at", "approved_by")
    actions = ["refresh_lists"]

    @admin.display(description="members")
    def member_count(self, server: VirtualServer) -> int:
        return server.members.count()

    @admin.display(description="open alerts")
    def open_alerts(self, server: VirtualServer) -> int:
        return server.pinning_alerts.filter(resolved_at__isnull=True).count()

    @admin.display(description="route (access settings)")
    def route_link(self, server: VirtualServer) -> str:
        if server.route_id is None:
            return "created on save"
        return format_html('<a href="{}">{}</a>', reverse("admin:routing_route_change", args=[server.route_id]), server.path)

    @admin.display(description="catalog now")
    def catalog_status(self, server: VirtualServer) -> str:
        config = virtual_server_for_service(server.service_id or 0)
        if config is None:
            return "not served (disabled or unsaved)"
        catalog = current_catalog(config)
        held = [tool.exposed_name for tool in catalog.unapproved if tool.held_back]
        parts = [f"{len(catalog.tools)} tools, {len(catalog.prompts)} prompts, {len(catalog.resources)} resources"]
        parts += [f"member {prefix} down: {reason}" for prefix, reason in catalog.down.items()]
        if held:
            parts.append(f"held back until approved: {', '.join(held)}")
        return "; ".join(parts)

    @admin.action(description="Refresh the members' lists now")
    def refresh_lists(self, request: HttpRequest, queryset: QuerySet[VirtualServer]) -> None:
        services = {m.service.id: m.service for server in queryset for m in compile_virtual_server(server).members}
        refreshed = member_lists.refresh_many(list(services.values()))
        down = [lists for lists in refreshed if not lists.up]
        self.message_user(request, f"Refreshed {len(refreshed)} member(s); {len(down)} down.")

    def get_urls(self) -> list[URLPattern]:
        review = path(
            "<int:object_id>/approve/", self.admin_site.admin_view(self.approve_view), name="federation_virtualserver_approve"
        )
        return [review, *super().get_urls()]

    def approve_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The diff of every tool against its approval, and the button that approves them all."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        server = get_object_or_404(VirtualServer, pk=object_id)
        if request.method == "POST":
            return self._approve(request, server)
        current = approval.review(server)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Approve tool definitions of {server.name}",
            "opts": self.model._meta,
            "server": server,
            "review": current,
            "shown": json.dumps(sorted(current.shown)),
        }
        return TemplateResponse(request, "admin/federation/virtualserver/approve.html", context)

    def _approve(self, request: HttpRequest, server: VirtualServer) -> HttpResponse:
        try:
            shown = {(int(m), str(t), str(d)) for m, t, d in json.loads(request.POST.get("shown", "[]"))}
        except (ValueError, TypeError):
            shown = set()
        outcome = approval.approve(server, shown, request.user.get_username())
        here = reverse("admin:federation_virtualserver_approve", args=[server.pk])
        if outcome.stale:
            self.message_user(request, "A member changed its tools since this page was shown; review them again.", messages.WARNING)
            return HttpResponseRedirect(here)
        self.message_user(request, f"Approved the current definitions ({outcome.approved} change(s)).")
        return HttpResponseRedirect(reverse("admin:federation_virtualserver_change", args=[server.pk]))


class ExposureRuleInline(admin.TabularInline):
    model = ExposureRule
    extra = 1
    fields = ("kind", "name", "action", "exposed_name", "description", "pinned_arguments")


class ApprovedToolInline(admin.TabularInline):
    model = ApprovedTool
    extra = 0
    fields = ("tool_name", "digest", "approved_at", "approved_by")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ("prefix", "virtual_server", "service", "unlisted_items", "session_scope", "position")
    list_filter = ("virtual_server",)
    search_fields = ("prefix", "virtual_server__name", "service__name")
    list_select_related = ("virtual_server", "service")
    inlines = [ExposureRuleInline, ApprovedToolInline]


@admin.register(PinningAlert)
class PinningAlertAdmin(admin.ModelAdmin):
    list_display = ("tool_name", "virtual_server", "member", "kind", "held_back", "detected_at", "resolved_at")
    list_filter = ("kind", "held_back", "virtual_server")
    list_select_related = ("virtual_server", "member")
    search_fields = ("tool_name", "virtual_server__name", "member__prefix")
    readonly_fields = ("virtual_server", "member", "tool_name", "kind", "digest", "definition", "held_back", "detected_at", "resolved_at", "review_link")

    @admin.display(description="review")
    def review_link(self, alert: PinningAlert) -> str:
        url = reverse("admin:federation_virtualserver_approve", args=[alert.virtual_server_id])
        return format_html('<a href="{}">Review and approve</a>', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
