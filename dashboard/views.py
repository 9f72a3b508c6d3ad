"""GET /dashboard/ (the page) and GET /dashboard/data.json (what the page shows), for staff.

The page is a cheap, empty frame: its script (``static/dashboard/dashboard.js``) fetches
data.json at once and then every ``REFRESH_SECONDS``, and draws the tables and charts from it.
So the stores are read only by data.json, and only while someone is looking.

- /dashboard/: a visitor who is not logged in as staff is sent to the admin login, and back.
- /dashboard/data.json: anyone but staff gets a 403 in problem+json (a script polling it after
  the session ended needs an answer it can read, not a login page).
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from dashboard.overview import gather_overview
from gateway_project.errors import GatewayError, MethodNotAllowed, render_error

REFRESH_SECONDS = 5
READ_METHODS = ("GET", "HEAD")
STAFF_ONLY_DETAIL = "Only staff users may read the dashboard: log in at /admin/ first"


class DashboardForbidden(GatewayError):
    """Raised when data.json is asked for without a staff session (anonymous or not staff)."""

    status = 403
    code = "forbidden"
    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__(STAFF_ONLY_DETAIL)


@require_safe
@never_cache
@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/dashboard.html", {"refresh_seconds": REFRESH_SECONDS})


# Read-only: a CSRF refusal would only turn the 405 below into a less useful answer.
@csrf_exempt
@never_cache
def dashboard_data(request: HttpRequest) -> HttpResponse:
    try:
        if request.method not in READ_METHODS:
            raise MethodNotAllowed("data.json answers GET and HEAD", headers={"Allow": ", ".join(READ_METHODS)})
        require_staff(request)
    except GatewayError as error:
        return render_error(error, jsonrpc=False, instance=request.path)
    return JsonResponse(gather_overview())


def require_staff(request: HttpRequest) -> None:
    """Raise unless the request comes from an active staff user's session."""
    user = getattr(request, "user", None)
    if user is None or not (user.is_authenticated and user.is_active and user.is_staff):
        raise DashboardForbidden()
