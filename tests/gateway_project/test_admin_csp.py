"""Every admin page works under the gateway's strict Content-Security-Policy (``default-src 'self'``).

The policy blocks inline ``<script>`` bodies, ``<style>`` elements, ``style=""`` attributes,
inline event handlers and ``javascript:`` URLs; a page using any of them would silently lose its
behaviour or colours in a browser. The test walks every model registered with the admin (so a
model registered later is walked too), with a row of each in the database so list cells,
badges and change forms actually render, and reads each page's HTML.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.staticfiles import finders
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from authn.models import IdentityProvider, Role
from authn.sessions import start_session
from federation.models import Member, PinningAlert, VirtualServer
from monitoring.models import AlertEvent, AlertRule
from performance.models import ResponseCachePolicy
from routing.models import Service
from security.api_keys import issue_api_key
from security.headers import CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE
from security.models import RateLimitPolicy

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)

SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.DOTALL | re.IGNORECASE)
STYLE_ELEMENT = re.compile(r"<style\b", re.IGNORECASE)
# An attribute inside a tag: " style=" or " onclick=" right after a tag name or another attribute.
STYLE_ATTRIBUTE = re.compile(r"<[a-zA-Z][^>]*\sstyle\s*=", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
LINK_TAG = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
HREF = re.compile(r'\shref="([^"]+)"')


@pytest.fixture
def one_of_each(db: Any, make_route: Any, admin_user: User) -> None:
    """A row of every model the admin shows, each with what makes its list cells interesting."""
    route = make_route("/api", ["http://10.0.0.1:80", "http://10.0.0.2:80"], name="api")
    ResponseCachePolicy.objects.create(route=route)
    RateLimitPolicy.objects.create(name="per-ip", limit=10, window_seconds=60).routes.add(route)
    issue_api_key(name="ci", owner=admin_user, expires_at=timezone.now() + timedelta(days=1))
    start_session(admin_user, client_ip="203.0.113.7", user_agent="claude-code/1.0")
    Role.objects.create(name="readers", permissions=["route:api"]).users.add(admin_user)
    IdentityProvider.objects.create(name="corp", issuer="https://id.example.com", jwks_url="https://id.example.com/jwks")
    rule = AlertRule.objects.create(name="slow", metric="p95_latency_ms", threshold=250, window_seconds=300)
    AlertEvent.objects.create(rule=rule, state=AlertEvent.State.FIRING, value=300, threshold=250)
    server = VirtualServer.objects.create(name="suite")
    member = Member.objects.create(virtual_server=server, service=Service.objects.create(name="weather", kind="mcp"), prefix="wx")
    PinningAlert.objects.create(
        virtual_server=server, member=member, tool_name="forecast", kind="new", digest="0" * 64, definition={}, held_back=True
    )
    outstanding = OutstandingToken.objects.create(
        user=admin_user, jti="a" * 32, token="header.payload.signature", expires_at=timezone.now() + timedelta(days=1)
    )
    BlacklistedToken.objects.create(token=outstanding)
    Group.objects.create(name="operators")


def csp_violations(html: str) -> list[str]:
    """What in ``html`` a ``default-src 'self'`` policy would block."""
    found = []
    for attributes, body in SCRIPT.findall(html):
        if "src=" not in attributes or body.strip():
            found.append(f"inline script: <script{attributes}>{body.strip()[:80]}")
    if STYLE_ELEMENT.search(html):
        found.append("a <style> element")
    found += [f"style attribute: {m.group(0)[-80:]}" for m in STYLE_ATTRIBUTE.finditer(html)]
    found += [f"event handler: {m.group(0)[-80:]}" for m in EVENT_HANDLER.finditer(html)]
    if "javascript:" in html:
        found.append("a javascript: URL")
    return found


def missing_stylesheets(html: str) -> list[str]:
    """Stylesheets the page links that no static finder has (their classes would not apply)."""
    static_url = "/" + settings.STATIC_URL.lstrip("/")
    links = [tag for tag in LINK_TAG.findall(html) if 'rel="stylesheet"' in tag]
    hrefs = [found.group(1) for found in map(HREF.search, links) if found and found.group(1).startswith(static_url)]
    assert hrefs, "the admin's own stylesheets are linked on every page"
    return [href for href in hrefs if not finders.find(href[len(static_url) :])]


def assert_works_under_the_policy(response: Any, page: str) -> None:
    assert response.status_code == 200, page
    assert response[CONTENT_SECURITY_POLICY] == CONTENT_SECURITY_POLICY_VALUE, page
    html = response.content.decode()
    assert csp_violations(html) == [], page
    assert missing_stylesheets(html) == [], page


def admin_url(model: type[Model], page: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=[model._meta.label for model, _ in REGISTERED])
def test_every_admin_page_of_a_model_works_under_the_strict_csp(
    admin_client: Any, one_of_each: None, model: type[Model], model_admin: admin.ModelAdmin
) -> None:
    row = model._default_manager.first()
    assert row is not None, f"one_of_each makes no {model._meta.label}: add one so its pages are walked"

    changelist = admin_client.get(admin_url(model, "changelist"))
    assert_works_under_the_policy(changelist, "changelist")
    assert changelist.context["cl"].result_count >= 1

    change = admin_client.get(admin_url(model, "change", row.pk))
    assert_works_under_the_policy(change, "change")

    add = admin_client.get(admin_url(model, "add"))
    if model_admin.has_add_permission(add.wsgi_request):
        assert_works_under_the_policy(add, "add")
    else:
        assert add.status_code == 403  # read-only history (sessions, alert events): no add page


def test_the_admin_index_and_the_route_tester_work_under_the_strict_csp(admin_client: Any, one_of_each: None) -> None:
    assert_works_under_the_policy(admin_client.get("/admin/"), "index")
    assert_works_under_the_policy(admin_client.get("/admin/routing/route/tester/"), "tester")
    tested = admin_client.post("/admin/routing/route/tester/", {"method": "GET", "path": "/api/x", "headers": "", "body": ""})
    assert_works_under_the_policy(tested, "tester result")
    assert "Matched route <strong>api</strong>" in tested.content.decode()


@pytest.mark.parametrize(
    ("html", "violation"),
    [
        ("<script>alert(1)</script>", "inline script"),
        ('<script src="/static/a.js">alert(1)</script>', "inline script"),
        ("<style>p {}</style>", "<style>"),
        ('<span class="x" style="color: red">x</span>', "style attribute"),
        ('<a href="#" onclick="go()">x</a>', "event handler"),
        ('<a href="javascript:go()">x</a>', "javascript:"),
    ],
)
def test_the_check_catches_what_the_policy_blocks(html: str, violation: str) -> None:
    assert any(violation in found for found in csp_violations(html))
    assert csp_violations('<script src="/static/a.js"></script><span class="x">styled by a class</span>') == []
