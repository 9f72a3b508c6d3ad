"""Django's own error handlers, answering problem+json instead of HTML pages.

These catch what happens outside the pipeline (a disallowed Host header, a crash in
middleware), so even then no caller of the gateway sees an HTML error page.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from gateway_project.errors import BadRequest, GatewayError, RouteNotFound, render_error


class Forbidden(GatewayError):
    """Raised by Django's permission machinery outside the pipeline."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class ServerError(GatewayError):
    """Raised when Django itself failed outside the pipeline."""

    status = 500
    code = "internal_error"
    title = "Internal server error"


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render_error(BadRequest(), jsonrpc=False, instance=request.path)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render_error(Forbidden(), jsonrpc=False, instance=request.path)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render_error(RouteNotFound("Not found"), jsonrpc=False, instance=request.path)


def server_error(request: HttpRequest) -> HttpResponse:
    return render_error(ServerError(), jsonrpc=False, instance=request.path)
