"""Only staff see the dashboard: the page sends everyone else to the admin login, data.json
answers them 403 in problem+json, and neither may be cached."""

from __future__ import annotations

from typing import Any

from django.test import Client

from dashboard.views import STAFF_ONLY_DETAIL
from tests.error_assertions import assert_problem


def test_staff_sees_the_dashboard_page(staff_client: Client) -> None:
    response = staff_client.get("/dashboard/")
    assert response.status_code == 200
    assert response.templates[0].name == "dashboard/dashboard.html"
    assert b'data-source="/dashboard/data.json"' in response.content


def test_anonymous_visitor_is_sent_to_the_admin_login_and_back(client: Any, db: Any) -> None:
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/dashboard/"


def test_user_who_is_not_staff_is_sent_to_the_admin_login(member_client: Client) -> None:
    response = member_client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_reads_the_data_as_json(staff_client: Client) -> None:
    response = staff_client.get("/dashboard/data.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_anonymous_data_request_gets_403_problem_json(client: Any, db: Any) -> None:
    body = assert_problem(client.get("/dashboard/data.json"), 403, "forbidden")
    assert body["detail"] == STAFF_ONLY_DETAIL
    assert body["instance"] == "/dashboard/data.json"


def test_data_request_from_a_user_who_is_not_staff_gets_403_problem_json(member_client: Client) -> None:
    assert_problem(member_client.get("/dashboard/data.json"), 403, "forbidden")


def test_data_json_answers_only_reads(staff_client: Client) -> None:
    response = staff_client.post("/dashboard/data.json")
    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"


def test_neither_page_nor_data_may_be_cached(staff_client: Client) -> None:
    for path in ("/dashboard/", "/dashboard/data.json"):
        assert "no-store" in staff_client.get(path)["Cache-Control"]
