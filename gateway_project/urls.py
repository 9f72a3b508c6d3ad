"""The gateway's own endpoints first; every other path falls through to the proxy."""

from django.contrib import admin
from django.urls import include, path, re_path

from authn import views as authn_views
from dashboard import views as dashboard_views
from gateway_project import health
from monitoring import views as monitoring_views
from routing.views import proxy
from security import admin as security_admin

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    # Before the admin's own URLs: the login form is rate-limited per IP (django-ratelimit).
    path("admin/login/", security_admin.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("dashboard/", dashboard_views.dashboard, name="dashboard"),
    path("dashboard/data.json", dashboard_views.dashboard_data, name="dashboard_data"),
    path("api/v1/auth/token/", authn_views.obtain_token, name="auth_token"),
    path("api/v1/auth/token/refresh/", authn_views.refresh_token, name="auth_token_refresh"),
    path("api/v1/auth/logout/", authn_views.logout, name="auth_logout"),
    # RFC 9728: the bare document, and the form with the resource's path appended.
    path(".well-known/oauth-protected-resource", authn_views.protected_resource_metadata),
    re_path(r"^\.well-known/oauth-protected-resource/(?P<resource_path>.*)$", authn_views.protected_resource_metadata),
    # The REST API, after /api/v1/auth/ (its own 404 answers every other /api/v1/ path).
    path("api/v1/", include("gateway_project.api_urls")),
    # Last: the catch-all. Anything above wins; everything else is a proxied request.
    re_path(r"^(?P<path>.*)$", proxy, name="proxy"),
]

handler400 = "gateway_project.error_views.bad_request"
handler403 = "gateway_project.error_views.permission_denied"
handler404 = "gateway_project.error_views.page_not_found"
handler500 = "gateway_project.error_views.server_error"
