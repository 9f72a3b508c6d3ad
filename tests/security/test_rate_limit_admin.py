"""Rate-limit policies in the admin, and the admin login's own limit (django-ratelimit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import override_settings
from django.urls import path

from security.admin import ADMIN_LOGIN_LIMITED_MESSAGE, admin_login
from security.models import RATE_MUST_BE_POSITIVE, TOKEN_BUCKET_NEEDS, WINDOW_MUST_BE_POSITIVE, RateLimitPolicy

# The line the lead adds to gateway_project/urls.py, ahead of admin.site.urls.
urlpatterns = [
    path("admin/login/", admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
]
ADD_URL = "/admin/security/ratelimitpolicy/add/"


@pytest.fixture
def admin_client(client: Any, db: Any) -> Any:
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "correct horse battery"))
    return client


def policy_form(**overrides: Any) -> dict[str, Any]:
    data = {"name": "per ip", "enabled": "on", "scope": "ip", "algorithm": "sliding_window", "limit": "10", "window_seconds": "60"}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_a_policy_is_created_and_edited_in_the_admin(admin_client: Any, make_route: Any) -> None:
    route = make_route("/api", "http://127.0.0.1:9")
    assert admin_client.post(ADD_URL, policy_form(routes=[route.pk])).status_code == 302
    policy = RateLimitPolicy.objects.get(name="per ip")
    assert (policy.limit, policy.window_seconds, list(policy.routes.all())) == (10, 60.0, [route])
    change_url = f"/admin/security/ratelimitpolicy/{policy.pk}/change/"
    assert admin_client.get(change_url).status_code == 200
    edited = policy_form(algorithm="token_bucket", limit="", window_seconds="", rate_per_second="2.5", burst="20")
    assert admin_client.post(change_url, edited).status_code == 302
    policy.refresh_from_db()
    assert (policy.algorithm, policy.rate_per_second, policy.burst, list(policy.routes.all())) == ("token_bucket", 2.5, 20, [])


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"limit": "-5"}, "limit", "Ensure this value is greater than or equal to 1."),
        ({"limit": "0"}, "limit", "Ensure this value is greater than or equal to 1."),
        ({"window_seconds": "0"}, "window_seconds", "Ensure this value is greater than or equal to 0.001."),
        ({"window_seconds": ""}, "window_seconds", "A sliding window needs a limit (requests) and a window in seconds."),
        ({"algorithm": "token_bucket", "burst": "5"}, "rate_per_second", TOKEN_BUCKET_NEEDS),
        ({"algorithm": "token_bucket", "rate_per_second": "-1", "burst": "5"}, "rate_per_second", "Ensure this value is greater than or equal to 1e-06."),
        ({"algorithm": "token_bucket", "rate_per_second": "1", "burst": "-2"}, "burst", "Ensure this value is greater than or equal to 1."),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(admin_client: Any, overrides: dict[str, Any], field: str, message: str) -> None:
    response = admin_client.post(ADD_URL, policy_form(**overrides))
    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    assert not RateLimitPolicy.objects.exists()


def test_model_validation_refuses_a_zero_window_and_rate(db: Any) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as window_error:
        RateLimitPolicy(name="w", algorithm="sliding_window", limit=1, window_seconds=0).clean()
    assert window_error.value.message_dict == {"window_seconds": [WINDOW_MUST_BE_POSITIVE]}
    with pytest.raises(ValidationError) as rate_error:
        RateLimitPolicy(name="r", algorithm="token_bucket", rate_per_second=0, burst=1).clean()
    assert rate_error.value.message_dict == {"rate_per_second": [RATE_MUST_BE_POSITIVE]}


@pytest.fixture
def clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@override_settings(ROOT_URLCONF=__name__, GATEWAY_ADMIN_LOGIN_RATE_LIMIT="3/m")
def test_admin_login_posts_beyond_the_limit_get_429(client: Any, db: Any, clean_cache: None) -> None:
    User.objects.create_superuser("operator", "op@example.com", "correct horse battery")
    wrong = {"username": "operator", "password": "wrong", "next": "/admin/"}
    statuses = [client.post("/admin/login/", wrong).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.post("/admin/login/", {**wrong, "password": "correct horse battery"})
    assert refused.status_code == 429 and refused.content.decode() == ADMIN_LOGIN_LIMITED_MESSAGE
    assert refused["Retry-After"] == "60"
    assert client.get("/admin/login/").status_code == 200  # the form itself is not limited
    other_address = client.post("/admin/login/", {**wrong, "password": "correct horse battery"}, REMOTE_ADDR="10.1.1.1")
    assert other_address.status_code == 302


def test_the_policy_list_says_which_routes_each_policy_applies_to(admin_client: Any, make_route: Any) -> None:
    RateLimitPolicy.objects.create(name="everyone", limit=10, window_seconds=60)
    narrow = RateLimitPolicy.objects.create(name="narrow", limit=10, window_seconds=60)
    narrow.routes.add(make_route("/a", "http://127.0.0.1:9", name="alpha"), make_route("/b", "http://127.0.0.1:9", name="beta"))
    html = admin_client.get("/admin/security/ratelimitpolicy/").content.decode()
    rows = {name: row for name in ("everyone", "narrow") for row in html.split("<tr")[1:] if f">{name}<" in row}
    assert '<td class="field-applies_to">every route</td>' in rows["everyone"]
    assert '<td class="field-applies_to">alpha, beta</td>' in rows["narrow"]
    searched = admin_client.get("/admin/security/ratelimitpolicy/", {"q": "beta"})
    assert [policy.name for policy in searched.context["cl"].result_list] == ["narrow"]
