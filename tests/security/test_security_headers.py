"""Every response the gateway sends carries the security headers, with the gateway's values."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from security.headers import (
    CONTENT_SECURITY_POLICY,
    CONTENT_TYPE_OPTIONS,
    FRAME_OPTIONS,
    REFERRER_POLICY,
    SECURITY_HEADERS,
    STRICT_TRANSPORT_SECURITY,
    XSS_PROTECTION,
)
from tests.live_servers import free_port
from tests.upstream_server import UpstreamHandler, UpstreamServer

# What an upstream might send to loosen the browser's protections; none of it may survive.
WEAKENING_HEADERS = {
    FRAME_OPTIONS: "ALLOWALL",
    CONTENT_SECURITY_POLICY: "*",
    CONTENT_TYPE_OPTIONS: "sniff",
    XSS_PROTECTION: "0",
    STRICT_TRANSPORT_SECURITY: "max-age=0",
    REFERRER_POLICY: "unsafe-url",
}


class WeakeningHandler(UpstreamHandler):
    """The test upstream, adding ``WEAKENING_HEADERS`` to every answer it gives."""

    def end_headers(self) -> None:
        for name, value in WEAKENING_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()


@pytest.fixture
def weakening_upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer()
    server.RequestHandlerClass = WeakeningHandler
    server.start()
    yield server
    server.stop()


def assert_security_headers(response: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response[name] == value, name


def proxied_answer(client: Any, make_route: Any, upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", upstream.url)
    return client.get("/api/echo")


def proxied_event_stream(client: Any, make_route: Any, upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", upstream.url)
    response = client.get("/api/sse?events=1&delay=0")
    b"".join(response.streaming_content)
    return response


def weakened_upstream_answer(client: Any, make_route: Any, weakening_upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", weakening_upstream.url)
    return client.get("/api/echo")


def weakened_upstream_error(client: Any, make_route: Any, weakening_upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", weakening_upstream.url)
    return client.get("/api/status/500")


def no_route(client: Any, **_: Any) -> Any:
    return client.get("/nowhere")


def wrong_method(client: Any, make_route: Any, upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", upstream.url, methods=["GET"])
    return client.delete("/api")


def body_too_large(client: Any, make_route: Any, upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", upstream.url)
    with override_settings(GATEWAY_MAX_BODY_BYTES=8):
        return client.post("/api/echo", "x" * 9, content_type="text/plain")


def mcp_route_error(client: Any, make_route: Any, upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/mcp", upstream.url, kind="mcp")
    return client.post("/mcp", "{not json", content_type="application/json")


def rate_limited(client: Any, make_route: Any, upstream: UpstreamServer, **_: Any) -> Any:
    make_route("/api", upstream.url)
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="1/60"):
        client.get("/api/echo")
        return client.get("/api/echo")


def upstream_unreachable(client: Any, make_route: Any, **_: Any) -> Any:
    make_route("/api", f"http://127.0.0.1:{free_port()}")
    return client.get("/api")


def disallowed_host(client: Any, **_: Any) -> Any:
    return client.get("/anything", headers={"Host": "evil.example"})


def admin_login_page(client: Any, **_: Any) -> Any:
    return client.get("/admin/login/")


def admin_redirect_to_login(client: Any, **_: Any) -> Any:
    return client.get("/admin/")


def admin_page_signed_in(client: Any, **_: Any) -> Any:
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client.get("/admin/routing/route/")


def liveness(client: Any, **_: Any) -> Any:
    return client.get("/healthz")


def readiness(client: Any, **_: Any) -> Any:
    return client.get("/readyz")


def cors_preflight(client: Any, **_: Any) -> Any:
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    return client.options("/mcp", headers=headers)


RESPONSE_KINDS: list[tuple[Callable[..., Any], int]] = [
    (proxied_answer, 200),
    (proxied_event_stream, 200),
    (weakened_upstream_answer, 200),
    (weakened_upstream_error, 500),
    (no_route, 404),
    (wrong_method, 405),
    (body_too_large, 413),
    (mcp_route_error, 400),
    (rate_limited, 429),
    (upstream_unreachable, 502),
    (disallowed_host, 400),
    (admin_login_page, 200),
    (admin_redirect_to_login, 302),
    (admin_page_signed_in, 200),
    (liveness, 200),
    (readiness, 200),
    (cors_preflight, 200),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("produce", "status"), RESPONSE_KINDS, ids=[kind.__name__ for kind, _ in RESPONSE_KINDS])
def test_every_response_kind_carries_every_security_header(
    client: Any, make_route: Any, upstream: UpstreamServer, weakening_upstream: UpstreamServer, produce: Callable[..., Any], status: int
) -> None:
    response = produce(client=client, make_route=make_route, upstream=upstream, weakening_upstream=weakening_upstream)
    assert response.status_code == status
    assert_security_headers(response)


def test_upstream_really_sends_the_weakening_headers(weakening_upstream: UpstreamServer) -> None:
    """Guards the test above: the weakening upstream must really try, or replacing proves nothing."""
    answer = urllib3.request("GET", f"{weakening_upstream.url}/echo")
    for name, value in WEAKENING_HEADERS.items():
        assert answer.headers[name] == value


def test_upstream_header_is_replaced_not_repeated(client: Any, make_route: Any, weakening_upstream: UpstreamServer) -> None:
    make_route("/api", weakening_upstream.url)
    response = client.get("/api/echo")
    assert json.loads(response.content)["method"] == "GET"  # the upstream's own body is relayed
    for name in SECURITY_HEADERS:
        assert [key for key in response.headers if key.lower() == name.lower()] == [name]
        assert WEAKENING_HEADERS[name] not in response[name].split(",")


def test_security_headers_are_the_issues_values() -> None:
    assert SECURITY_HEADERS == {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "X-XSS-Protection": "1; mode=block",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "Content-Security-Policy": "default-src 'self'",
        "Referrer-Policy": "same-origin",
    }


def test_security_headers_middleware_is_outermost() -> None:
    """First in MIDDLEWARE wraps all others, so their answers and Django's error pages get it."""
    assert settings.MIDDLEWARE[0] == "security.headers.SecurityHeadersMiddleware"
    assert "django.middleware.clickjacking.XFrameOptionsMiddleware" not in settings.MIDDLEWARE


@pytest.mark.django_db
def test_admin_pages_need_no_inline_script_or_style(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    """``default-src 'self'`` blocks inline <script>, <style> and style="" attributes; the
    admin pages this gateway serves must use none, or they would break under the policy."""
    route = make_route("/api", upstream.url)
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    pages = [
        "/admin/",
        "/admin/routing/route/",
        f"/admin/routing/route/{route.pk}/change/",
        "/admin/routing/route/add/",
        "/admin/routing/service/",
        f"/admin/routing/service/{route.service.pk}/change/",
        "/admin/routing/route/tester/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert "<style" not in html, page
        assert ' style="' not in html, page
        assert "javascript:" not in html, page
        for tag in html.split("<script")[1:]:
            opening = tag.split(">", 1)[0]
            assert " src=" in opening, (page, opening)
            assert tag.split(">", 1)[1].split("</script>", 1)[0].strip() == "", (page, opening)
