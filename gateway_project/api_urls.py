"""``/api/v1/``: every app's REST endpoints, the OpenAPI schema and the docs.

Each app owns its serializers and views (``routing/api.py``, ``security/api.py``,
``authn/api.py``, ``performance/api.py``, ``monitoring/api.py``,
``federation/api.py``); this module only puts them at
their paths. The token endpoints (``/api/v1/auth/…``) are plain Django views listed in
``urls.py``.
"""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from authn.api import IdentityProviderViewSet, RoleViewSet, SessionViewSet
from federation.api import PinningAlertViewSet, VirtualServerViewSet
from gateway_project.api_docs import ApiDocsView, api_endpoint_not_found
from gateway_project.config_api import ConfigView
from monitoring.api import AlertEventViewSet, AlertRuleViewSet, AlertStatesView, MetricsSeriesView, MetricsView, ProcessesView
from performance.api import CacheStatsView, ResponseCachePolicyViewSet
from routing.api import HealthView, RouteViewSet, ServiceViewSet, TargetViewSet
from security.api import ApiKeyViewSet, RateLimitPolicyViewSet

router = DefaultRouter()
# /services/ only: a second spelling (/services.json) would be one more path to document and guard.
router.include_format_suffixes = False
router.register("services", ServiceViewSet, basename="service")
router.register("targets", TargetViewSet, basename="target")
router.register("routes", RouteViewSet, basename="route")
router.register("rate-limit-policies", RateLimitPolicyViewSet, basename="rate-limit-policy")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("sessions", SessionViewSet, basename="session")
router.register("roles", RoleViewSet, basename="role")
router.register("identity-providers", IdentityProviderViewSet, basename="identity-provider")
router.register("cache-policies", ResponseCachePolicyViewSet, basename="cache-policy")
router.register("alert-rules", AlertRuleViewSet, basename="alert-rule")
router.register("alert-events", AlertEventViewSet, basename="alert-event")
router.register("virtual-servers", VirtualServerViewSet, basename="virtual-server")
router.register("pinning-alerts", PinningAlertViewSet, basename="pinning-alert")

urlpatterns = [
    path("health/", HealthView.as_view(), name="api-health"),
    path("cache-stats/", CacheStatsView.as_view(), name="api-cache-stats"),
    path("alerts/", AlertStatesView.as_view(), name="api-alerts"),
    path("metrics/", MetricsView.as_view(), name="api-metrics"),
    path("metrics/series/", MetricsSeriesView.as_view(), name="api-metrics-series"),
    path("metrics/processes/", ProcessesView.as_view(), name="api-metrics-processes"),
    path("config/", ConfigView.as_view(), name="api-config"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", ApiDocsView.as_view(), name="api-docs"),
    path("", include(router.urls)),
    # Last: any other path under /api/v1/ is a 404 here, never a proxied request.
    re_path(r"^(?P<path>.*)$", api_endpoint_not_found),
]
