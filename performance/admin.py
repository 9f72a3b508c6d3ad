"""Admin for response-cache policies, with the action that purges a route's cached answers.

The same purge is offered on the route list (``routing/admin.py``) through ``purge_routes``.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from gateway_project.state import StateStoreUnavailable
from performance.cache import purge_route
from performance.models import ResponseCachePolicy

PURGED_MESSAGE = "{count} cached answer(s) purged from {routes} route(s)."
PURGE_FAILED_MESSAGE = "The cache store cannot be reached; nothing was purged. Try again once Redis is back."


def purge_routes(request: HttpRequest, route_ids: Sequence[int]) -> None:
    """Purge every cached answer of these routes and tell the operator how many went."""
    try:
        purged = sum(purge_route(route_id) for route_id in route_ids)
    except StateStoreUnavailable:
        messages.error(request, PURGE_FAILED_MESSAGE)
        return
    messages.success(request, PURGED_MESSAGE.format(count=purged, routes=len(route_ids)))


@admin.register(ResponseCachePolicy)
class ResponseCachePolicyAdmin(admin.ModelAdmin):
    list_display = ["route", "route_path", "enabled", "ttl_seconds", "cacheable_tools"]
    list_filter = ["enabled"]
    search_fields = ["route__name", "route__path"]
    list_select_related = ["route"]
    fields = ["route", "enabled", "ttl_seconds", "cacheable_tools"]
    actions = ["purge_cached_answers"]

    @admin.display(description="path", ordering="route__path")
    def route_path(self, policy: ResponseCachePolicy) -> str:
        return policy.route.path

    @admin.action(description="Purge cached answers")
    def purge_cached_answers(self, request: HttpRequest, queryset: QuerySet[ResponseCachePolicy]) -> None:
        purge_routes(request, list(queryset.values_list("route_id", flat=True)))
