"""Sessions, CSRF, auth and messages run for the operator's paths only, never on proxied ones."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.test import Client

from gateway_project.middleware import OperatorMiddleware


def seen_by_view(rf: Any, path: str) -> HttpRequest:
    seen: list[HttpRequest] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse("ok")

    OperatorMiddleware(view)(rf.get(path))
    return seen[0]


def test_a_proxied_request_gets_no_session_user_or_messages(rf: Any) -> None:
    request = seen_by_view(rf, "/mcp/demo")
    assert not hasattr(request, "session") and not hasattr(request, "user") and not hasattr(request, "_messages")


def test_an_admin_request_gets_session_user_and_messages(rf: Any, db: Any) -> None:
    request = seen_by_view(rf, "/admin/")
    assert hasattr(request, "session") and hasattr(request, "user") and hasattr(request, "_messages")


def test_admin_login_still_needs_a_csrf_token(db: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    refused = client.post("/admin/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403
    client.get("/admin/login/")
    token = client.cookies["csrftoken"].value
    accepted = client.post("/admin/login/", {"username": "x", "password": "y", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 200  # the form again, with "wrong password", not a CSRF refusal


def test_a_proxied_answer_sets_no_cookie_and_no_vary_cookie(client: Any, make_route: Any, upstream: Any) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/echo")
    assert response.status_code == 200
    assert not response.cookies and "Cookie" not in response.get("Vary", "")
