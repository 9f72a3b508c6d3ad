"""API keys in the admin: create and rotate show the key once, revoke, the usage columns, and each
key's status as a badge and a filter."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.utils import timezone

from security.api_keys import find_key, hash_key, issue_api_key, revoke_api_key
from security.models import ApiKey

CHANGELIST_URL = "/admin/security/apikey/"
ADD_URL = "/admin/security/apikey/add/"
KEY_IN_TEXT = re.compile(r"mgw_[A-Za-z0-9_-]{43}")


@pytest.fixture
def admin_client(client: Any, db: Any) -> Any:
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "correct horse battery"))
    return client


def shown_keys(response: Any) -> list[str]:
    return KEY_IN_TEXT.findall(response.content.decode())


def key_form(**overrides: Any) -> dict[str, Any]:
    data = {"name": "ci", "enabled": "on", "permissions": '["tool:demo:add"]', "per_minute_limit": "60"}
    data.update(overrides)
    return data


def test_creating_a_key_shows_it_once(admin_client: Any) -> None:
    created = admin_client.post(ADD_URL, key_form(), follow=True)
    assert created.status_code == 200
    keys = shown_keys(created)
    assert len(keys) == 1
    api_key = ApiKey.objects.get()
    assert api_key.key_hash == hash_key(keys[0]) and api_key.permissions == ["tool:demo:add"]
    assert api_key.per_minute_limit == 60
    assert find_key(keys[0]) is not None
    assert shown_keys(admin_client.get(CHANGELIST_URL)) == []  # not again
    assert shown_keys(admin_client.get(f"{CHANGELIST_URL}{api_key.pk}/change/")) == []


def test_bad_permissions_are_refused_in_the_form(admin_client: Any) -> None:
    response = admin_client.post(ADD_URL, key_form(permissions='{"not": "a list"}'))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["permissions"]
    assert not ApiKey.objects.exists() and shown_keys(response) == []


def test_rotating_shows_the_new_key_once_and_the_old_one_stops_working(admin_client: Any) -> None:
    api_key, old = issue_api_key(name="ci")
    response = admin_client.post(CHANGELIST_URL, {"action": "rotate_keys", "_selected_action": [api_key.pk]}, follow=True)
    keys = shown_keys(response)
    assert len(keys) == 1 and keys[0] != old
    assert find_key(old) is None and find_key(keys[0]) is not None
    api_key.refresh_from_db()
    assert api_key.key_hash == hash_key(keys[0]) and api_key.key_prefix == keys[0][4:12]
    assert shown_keys(admin_client.get(CHANGELIST_URL)) == []


def test_revoking_disables_the_key_for_good(admin_client: Any) -> None:
    api_key, key = issue_api_key(name="ci")
    response = admin_client.post(CHANGELIST_URL, {"action": "revoke_keys", "_selected_action": [api_key.pk]}, follow=True)
    assert "1 API key(s) revoked." in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and not api_key.enabled
    cached = find_key(key)
    assert cached is not None and cached.refusal_reason(timezone.now()) == "revoked"
    rotated = admin_client.post(CHANGELIST_URL, {"action": "rotate_keys", "_selected_action": [api_key.pk]}, follow=True)
    assert shown_keys(rotated) == [] and "is revoked and was not rotated" in rotated.content.decode()


def test_the_list_shows_usage(admin_client: Any) -> None:
    api_key, key = issue_api_key(name="busy key", owner=User.objects.get(username="operator"))
    ApiKey.objects.filter(pk=api_key.pk).update(request_count=4, latency_total_ms=50, last_used_at=timezone.now())
    page = admin_client.get(CHANGELIST_URL).content.decode()
    assert "busy key" in page and f"mgw_{api_key.key_prefix}…" in page and "operator" in page
    assert ">4<" in page and "12.5" in page
    assert key[4:] not in page


STATUS_BADGE = re.compile(r'<span class="api-key-status api-key-status-(\w+)">([\w ]+)</span>')


@pytest.fixture
def one_key_per_status(db: Any) -> dict[str, ApiKey]:
    """A key in each status a caller could meet, named after it."""
    now = timezone.now()
    keys = {
        "active": issue_api_key(name="active", expires_at=now + timedelta(days=1))[0],
        "disabled": issue_api_key(name="disabled", enabled=False)[0],
        "owner_inactive": issue_api_key(name="owner_inactive", owner=User.objects.create_user("gone", is_active=False))[0],
        "expired": issue_api_key(name="expired", expires_at=now - timedelta(minutes=1))[0],
        "revoked": issue_api_key(name="revoked")[0],
    }
    revoke_api_key(keys["revoked"])
    return keys


def test_the_list_shows_each_keys_status_as_a_coloured_badge(admin_client: Any, one_key_per_status: dict[str, ApiKey]) -> None:
    response = admin_client.get(CHANGELIST_URL)
    html = response.content.decode()
    shown = {name: STATUS_BADGE.findall(row) for name in one_key_per_status for row in html.split("<tr")[1:] if f">{name}<" in row}
    assert shown == {
        "active": [("active", "active")],
        "disabled": [("disabled", "disabled")],
        "owner_inactive": [("owner_inactive", "owner inactive")],
        "expired": [("expired", "expired")],
        "revoked": [("revoked", "revoked")],
    }
    assert static("security/admin.css") in html
    stylesheet = Path(str(finders.find("security/admin.css"))).read_text()
    assert all(f".api-key-status-{status} " in stylesheet for status in one_key_per_status)


@pytest.mark.parametrize("status", ["active", "disabled", "owner_inactive", "expired", "revoked"])
def test_the_status_filter_shows_only_keys_in_that_status(
    admin_client: Any, one_key_per_status: dict[str, ApiKey], status: str
) -> None:
    response = admin_client.get(CHANGELIST_URL, {"status": status})
    assert [key.name for key in response.context["cl"].result_list] == [status]


def test_a_key_without_an_owner_that_has_not_expired_is_active(admin_client: Any) -> None:
    issue_api_key(name="service-account")
    response = admin_client.get(CHANGELIST_URL, {"status": "active"})
    assert [key.name for key in response.context["cl"].result_list] == ["service-account"]
