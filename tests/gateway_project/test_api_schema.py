"""The REST API's OpenAPI schema (valid, complete, errors documented as problem+json) and its
docs page (served by the gateway itself, loading nothing from anywhere else)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from openapi_spec_validator import validate

from gateway_project.errors import PROBLEM_CONTENT_TYPE
from tests.api_client import API, ApiClient
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

SCHEMA = f"{API}/schema/"
DOCS = f"{API}/docs/"

DOCUMENTED_PATHS = [
    "/api/v1/services/",
    "/api/v1/services/{id}/",
    "/api/v1/targets/",
    "/api/v1/routes/",
    "/api/v1/rate-limit-policies/",
    "/api/v1/api-keys/",
    "/api/v1/api-keys/{id}/rotate/",
    "/api/v1/api-keys/{id}/revoke/",
    "/api/v1/sessions/",
    "/api/v1/sessions/{id}/end/",
    "/api/v1/roles/",
    "/api/v1/identity-providers/",
    "/api/v1/cache-policies/",
    "/api/v1/cache-policies/{id}/purge/",
    "/api/v1/cache-stats/",
    "/api/v1/health/",
    "/api/v1/config/",
    "/api/v1/alert-rules/",
    "/api/v1/alert-rules/{id}/",
    "/api/v1/alert-events/",
    "/api/v1/alert-events/{id}/",
    "/api/v1/alerts/",
    "/api/v1/metrics/",
    "/api/v1/metrics/series/",
    "/api/v1/metrics/processes/",
    "/api/v1/virtual-servers/",
    "/api/v1/virtual-servers/{id}/",
    "/api/v1/virtual-servers/{id}/approve/",
    "/api/v1/virtual-servers/{id}/status/",
    "/api/v1/pinning-alerts/",
    "/api/v1/pinning-alerts/{id}/",
]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The document the schema endpoint serves, generated once for the module (it takes a second)."""
    document: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return document


def test_the_schema_is_a_valid_openapi_document(schema: dict[str, Any]) -> None:
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_the_schema_endpoint_serves_it_as_yaml_and_json(staff_api: ApiClient, schema: dict[str, Any]) -> None:
    as_yaml = staff_api.get(SCHEMA)
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(as_yaml.content) == json.loads(json.dumps(schema))
    as_json = staff_api.get(SCHEMA, {"format": "json"})
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert as_json.json() == json.loads(json.dumps(schema))


def test_every_endpoint_is_documented(schema: dict[str, Any]) -> None:
    assert set(DOCUMENTED_PATHS) - set(schema["paths"]) == set()


def test_every_operation_documents_its_refusals_as_problem_json(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "401", "403", "429"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == [PROBLEM_CONTENT_TYPE], (method, path, status)


def test_the_security_schemes_are_the_gateways_credentials(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["jwt"] == {**schemes["jwt"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}


def test_write_only_and_secret_fields_stay_out_of_answers(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert "upstream_auth_value" not in components["Target"]["properties"]
    assert "upstream_auth_value" in components["TargetRequest"]["properties"]
    assert "key_hash" not in components["ApiKey"]["properties"]
    assert "key" in components["IssuedApiKey"]["properties"]


def test_the_schema_needs_the_same_access_as_the_api(anonymous_api: ApiClient, member_api: ApiClient, key_api: Any) -> None:
    assert_problem(anonymous_api.get(SCHEMA), 401, "credential_required")
    assert_problem(member_api.get(SCHEMA), 403, "forbidden")
    assert key_api(["api:read"]).get(SCHEMA).status_code == 200


# --- the docs page ---------------------------------------------------------------------------------


def test_the_docs_page_lists_every_endpoint(staff_api: ApiClient) -> None:
    response = staff_api.get(DOCS)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for path in DOCUMENTED_PATHS:
        assert f"<code>{path}</code>" in html
    assert "ttl_seconds" in html and "The route&#x27;s name." in html  # body fields, with their help


def test_the_docs_page_loads_nothing_from_elsewhere_and_runs_no_script(staff_api: ApiClient) -> None:
    html = staff_api.get(DOCS).content.decode()
    assert "<script" not in html
    assert " style=" not in html and "<style" not in html  # CSP default-src 'self' refuses inline styles
    for attribute, url in re.findall(r'(src|href)="([^"]*)"', html):
        assert url.startswith(("/", "#")), (attribute, url)


def test_a_staff_user_signed_in_to_the_admin_reads_the_docs(staff_user: User) -> None:
    browser = Client()
    browser.force_login(staff_user)
    assert browser.get(DOCS).status_code == 200


def test_the_docs_need_the_same_access_as_the_api(anonymous_api: ApiClient, member_api: ApiClient) -> None:
    assert_problem(anonymous_api.get(DOCS), 401, "credential_required")
    assert_problem(member_api.get(DOCS), 403, "forbidden")
