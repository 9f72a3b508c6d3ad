"""The authn admin: the read-only sessions list with its status badges and end action, roles with
validated grants, and identity providers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from authn.admin import SESSIONS_ENDED, SESSIONS_NOT_ENDED
from authn.models import GatewaySession, IdentityProvider, Role
from authn.sessions import session_is_alive, start_session, touch_session

SESSIONS_URL = "/admin/authn/gatewaysession/"
ROLES_URL = "/admin/authn/role/"
PROVIDERS_URL = "/admin/authn/identityprovider/"
STATUS_BADGE = re.compile(r'<span class="session-status session-status-(\w+)">(\w+)</span>')


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser("operator", "op@example.com", "correct horse battery")


@pytest.fixture
def admin_client(client: Any, operator: User) -> Any:
    client.force_login(operator)
    return client


@pytest.fixture
def alice(db: Any) -> User:
    return User.objects.create_user("alice")


def session_row(session_id: str, user: User, *, expires_in: timedelta, ended_in: timedelta | None = None) -> str:
    """A row as the jobs leave it (no live copy): for sessions in the past."""
    now = timezone.now()
    GatewaySession.objects.create(
        id=session_id,
        user=user,
        created_at=now - timedelta(hours=1),
        last_activity_at=now - timedelta(minutes=40),
        expires_at=now + expires_in,
        ended_at=None if ended_in is None else now + ended_in,
        client_ip="198.51.100.9",
        user_agent="old-client/0.1",
    )
    return session_id


@pytest.fixture
def one_of_each(alice: User) -> dict[str, str]:
    """An active session (with its live copy), one ended by logout, and two that expired."""
    return {
        "active": start_session(alice, client_ip="203.0.113.7", user_agent="claude-code/1.0 " + "x" * 100),
        # ended 10 minutes before it would have expired
        "ended": session_row("ENDEDxxx-session", alice, expires_in=timedelta(minutes=-5), ended_in=timedelta(minutes=-15)),
        # the cleanup recorded it: ended_at == expires_at
        "expired": session_row("EXPIREDx-session", alice, expires_in=timedelta(minutes=-10), ended_in=timedelta(minutes=-10)),
        # not cleaned up yet
        "lapsed": session_row("LAPSEDxx-session", alice, expires_in=timedelta(minutes=-1)),
    }


def badges(response: Any) -> list[tuple[str, str]]:
    return STATUS_BADGE.findall(response.content.decode())


# --- sessions ------------------------------------------------------------------------------------


def test_session_list_shows_each_status_as_a_badge(admin_client: Any, one_of_each: dict[str, Any]) -> None:
    response = admin_client.get(SESSIONS_URL)
    assert response.status_code == 200
    assert sorted(badges(response)) == [
        ("active", "active"), ("ended", "ended"), ("expired", "expired"), ("expired", "expired"),
    ]
    page = response.content.decode()
    assert "authn/sessions_admin.css" in page  # the badges' stylesheet, allowed by the CSP
    assert 'style="' not in "".join(re.findall(r'<span class="session-status[^>]*>', page))
    active_id = one_of_each["active"]
    assert f'<td class="field-short_id">{active_id[:8]}…</td>' in page
    assert "claude-code/1.0 " + "x" * 44 + "…" in page and "x" * 100 not in page
    assert "203.0.113.7" in page and "alice" in page


@pytest.mark.parametrize(
    ("status", "expected"),
    [("active", ["active"]), ("ended", ["ended"]), ("expired", ["expired", "lapsed"])],
)
def test_status_filter_shows_only_sessions_in_that_status(
    admin_client: Any, one_of_each: dict[str, str], status: str, expected: list[str]
) -> None:
    response = admin_client.get(SESSIONS_URL, {"status": status})
    assert response.status_code == 200
    shown = {session.pk for session in response.context["cl"].result_list}
    assert shown == {one_of_each[name] for name in expected}
    assert {badge for badge, _ in badges(response)} == {status}


@pytest.mark.parametrize(
    ("query", "expected"),
    [("alice", ["active", "ended", "expired", "lapsed"]), ("203.0.113.7", ["active"]), ("ENDEDxxx", ["ended"])],
    ids=["username", "ip", "short-id"],
)
def test_sessions_are_found_by_username_ip_and_short_id(
    admin_client: Any, one_of_each: dict[str, str], query: str, expected: list[str]
) -> None:
    response = admin_client.get(SESSIONS_URL, {"q": query})
    assert response.status_code == 200
    assert {session.pk for session in response.context["cl"].result_list} == {one_of_each[name] for name in expected}


def test_a_session_page_shows_it_read_only(admin_client: Any, one_of_each: dict[str, str]) -> None:
    url = f"{SESSIONS_URL}{one_of_each['active']}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert admin_client.post(url, {"user_agent": "forged"}).status_code == 403
    assert GatewaySession.objects.get(pk=one_of_each["active"]).user_agent.startswith("claude-code/1.0")


def test_sessions_cannot_be_added_or_deleted(admin_client: Any, one_of_each: dict[str, str]) -> None:
    assert admin_client.get(f"{SESSIONS_URL}add/").status_code == 403
    assert admin_client.post(f"{SESSIONS_URL}{one_of_each['active']}/delete/", {"post": "yes"}).status_code == 403
    response = admin_client.get(SESSIONS_URL)
    assert "delete_selected" not in response.content.decode()
    assert GatewaySession.objects.count() == 4


def test_ending_selected_sessions_stops_their_tokens(admin_client: Any, alice: User) -> None:
    chosen = [start_session(alice, client_ip=None, user_agent="a"), start_session(alice, client_ip=None, user_agent="b")]
    spared = start_session(alice, client_ip=None, user_agent="c")
    response = admin_client.post(
        SESSIONS_URL, {"action": "end_sessions", "_selected_action": chosen}, follow=True
    )
    assert response.status_code == 200
    assert SESSIONS_ENDED.format(count=2) in response.content.decode()
    assert not any(touch_session(session_id) for session_id in chosen)
    assert session_is_alive(spared)
    assert GatewaySession.objects.filter(pk__in=chosen, ended_at__isnull=False).count() == 2
    assert [badge for badge, _ in badges(admin_client.get(SESSIONS_URL, {"status": "ended"}))] == ["ended", "ended"]


def test_ending_already_ended_sessions_ends_none(admin_client: Any, one_of_each: dict[str, str]) -> None:
    ended = GatewaySession.objects.get(pk=one_of_each["ended"]).ended_at
    response = admin_client.post(
        SESSIONS_URL, {"action": "end_sessions", "_selected_action": [one_of_each["ended"], one_of_each["expired"]]},
        follow=True,
    )
    assert SESSIONS_ENDED.format(count=0) in response.content.decode()
    assert GatewaySession.objects.get(pk=one_of_each["ended"]).ended_at == ended


def test_ending_sessions_while_the_state_store_is_down_says_so_and_ends_nothing(
    admin_client: Any, alice: User, state_store_down: None
) -> None:
    session_row("LIVExxxx-session", alice, expires_in=timedelta(minutes=20))
    response = admin_client.post(
        SESSIONS_URL, {"action": "end_sessions", "_selected_action": ["LIVExxxx-session"]}, follow=True
    )
    assert response.status_code == 200
    assert SESSIONS_NOT_ENDED in response.content.decode()
    assert GatewaySession.objects.get(pk="LIVExxxx-session").ended_at is None


def test_staff_without_the_change_permission_cannot_end_sessions(client: Any, one_of_each: dict[str, str]) -> None:
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(*_permissions("view_gatewaysession"))
    client.force_login(viewer)
    response = client.get(SESSIONS_URL)
    assert response.status_code == 200 and "end_sessions" not in response.content.decode()
    client.post(SESSIONS_URL, {"action": "end_sessions", "_selected_action": [one_of_each["active"]]})
    assert session_is_alive(one_of_each["active"])


def _permissions(*codenames: str) -> list[Any]:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(content_type__app_label="authn", codename__in=codenames))


# --- roles ---------------------------------------------------------------------------------------


def role_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "support", "description": "Helps customers", "permissions": '["tool:demo:*"]'}
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("permissions", "message"),
    [
        ('["tools:demo:add"]', "Bad grant: 'tools:demo:add' starts with 'tools'; use one of route, tool, prompt, resource"),
        ('[" tool:demo:add"]', "Bad grant: a grant may not be empty or start or end with spaces."),
        ('{"tool": "demo"}', "Give a JSON list of strings, e.g."),
        ("tool:demo:add", "Enter a valid JSON."),
    ],
    ids=["unknown-kind", "spaces", "not-a-list", "not-json"],
)
def test_a_role_with_bad_grants_is_refused_with_a_readable_message(
    admin_client: Any, permissions: str, message: str
) -> None:
    response = admin_client.post(f"{ROLES_URL}add/", role_form(permissions=permissions))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["permissions"]
    assert any(error.startswith(message) for error in errors), errors
    assert not Role.objects.exists()


def test_a_role_is_saved_with_its_grants_and_users(admin_client: Any, alice: User, operator: User) -> None:
    response = admin_client.post(
        f"{ROLES_URL}add/", role_form(permissions='["tool:demo:*", "route:billing"]', users=[alice.pk, operator.pk])
    )
    assert response.status_code == 302
    role = Role.objects.get()
    assert role.permissions == ["tool:demo:*", "route:billing"]
    assert set(role.users.all()) == {alice, operator}


def test_role_list_counts_grants_and_users(admin_client: Any, alice: User, operator: User) -> None:
    Role.objects.create(name="support", permissions=["tool:demo:*", "route:billing", "prompt:demo:greet"]).users.add(
        alice, operator
    )
    Role.objects.create(name="nobody", permissions=[])
    response = admin_client.get(ROLES_URL)
    assert response.status_code == 200
    rows = {role.name: role for role in response.context["cl"].result_list}
    admin_view = response.context["cl"].model_admin
    assert (admin_view.grant_count(rows["support"]), admin_view.user_count(rows["support"])) == (3, 2)
    assert (admin_view.grant_count(rows["nobody"]), admin_view.user_count(rows["nobody"])) == (0, 0)
    assert 'id="id_users_from"' not in response.content.decode()  # the picker is on the form only
    assert 'class="selectfilter' in admin_client.get(f"{ROLES_URL}add/").content.decode()


def test_roles_are_found_by_name(admin_client: Any, db: Any) -> None:
    Role.objects.create(name="support")
    Role.objects.create(name="billing-admins")
    response = admin_client.get(ROLES_URL, {"q": "billing"})
    assert [role.name for role in response.context["cl"].result_list] == ["billing-admins"]


# --- identity providers --------------------------------------------------------------------------


def test_identity_provider_list_shows_and_filters_providers(admin_client: Any, db: Any) -> None:
    IdentityProvider.objects.create(name="keycloak", issuer="https://sso.example.com/realms/mcp", audience="mcp-gw")
    IdentityProvider.objects.create(name="entra", issuer="https://login.example.net/tenant/v2.0", enabled=False)
    response = admin_client.get(PROVIDERS_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "https://sso.example.com/realms/mcp" in page and "mcp-gw" in page and "entra" in page
    enabled = admin_client.get(PROVIDERS_URL, {"enabled__exact": "1"})
    assert [provider.name for provider in enabled.context["cl"].result_list] == ["keycloak"]
    found = admin_client.get(PROVIDERS_URL, {"q": "login.example.net"})
    assert [provider.name for provider in found.context["cl"].result_list] == ["entra"]


def test_an_identity_provider_with_a_shared_secret_algorithm_is_refused(admin_client: Any, db: Any) -> None:
    response = admin_client.post(
        f"{PROVIDERS_URL}add/",
        {
            "name": "bad", "enabled": "on", "issuer": "https://bad.example.com", "jwks_url": "", "audience": "",
            "algorithms": '["HS256"]', "subject_claim": "sub", "roles_claim": "roles", "role_map": "{}",
            "permissions_claim": "",
        },
    )
    assert response.status_code == 200
    assert "no HS*" in " ".join(response.context["adminform"].form.errors["algorithms"])
    assert not IdentityProvider.objects.exists()
