"""CORS: preflights answered by the gateway itself, MCP headers allowed and exposed to browsers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from tests.settings_probe import settings_in_subprocess
from tests.upstream_server import UpstreamHandler, UpstreamServer

ALLOWED = "https://app.example"
FOREIGN = "https://evil.example"
MCP_REQUEST_HEADERS = [
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Accept",
]
EXPOSED_TO_BROWSERS = ["Mcp-Session-Id", "MCP-Protocol-Version", "WWW-Authenticate", "Retry-After", "RateLimit-Remaining"]
CORS_SETTINGS_AS_JSON = (
    "__import__('json').dumps([settings.CORS_ALLOWED_ORIGINS, settings.CORS_ALLOW_CREDENTIALS, settings.CORS_PREFLIGHT_MAX_AGE])"
)
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}

pytestmark = pytest.mark.usefixtures("allowed_origin")


@pytest.fixture
def allowed_origin() -> Iterator[None]:
    with override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED]):
        yield


class WildcardCorsHandler(UpstreamHandler):
    """An upstream that opens itself to every origin, with credentials."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Access-Control-Expose-Headers", "X-Secret")
        super().end_headers()


@pytest.fixture
def wildcard_upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer()
    server.RequestHandlerClass = WildcardCorsHandler
    server.start()
    yield server
    server.stop()


def preflight(client: Any, path: str, origin: str, method: str = "POST", headers: str = "") -> Any:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=request_headers)


def listed(value: str) -> list[str]:
    return [item.strip().lower() for item in value.split(",")]


def test_preflight_from_allowed_origin_is_answered_by_the_gateway(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    response = preflight(client, "/mcp", ALLOWED, headers="mcp-session-id, mcp-protocol-version, authorization, content-type")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert response["Access-Control-Max-Age"] == str(settings.CORS_PREFLIGHT_MAX_AGE)
    assert set(listed(response["Access-Control-Allow-Methods"])) >= {"get", "post", "delete", "options"}
    assert "origin" in listed(response["Vary"])
    assert upstream.requests == []


def test_preflight_allows_every_mcp_request_header(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    allowed_headers = listed(preflight(client, "/mcp", ALLOWED)["Access-Control-Allow-Headers"])
    for name in MCP_REQUEST_HEADERS:
        assert name.lower() in allowed_headers, name


def test_preflight_asks_for_no_credentials_even_on_a_credentialed_route(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    """Browsers never send credentials with a preflight; answering it must not need them."""
    make_route("/mcp", upstream.url, kind="mcp")
    response = preflight(client, "/mcp", ALLOWED, headers="authorization")
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response
    assert upstream.requests == []


def test_preflight_from_foreign_origin_gets_no_permission_and_is_not_forwarded(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    response = preflight(client, "/mcp", FOREIGN)
    # django-cors-headers answers every preflight; without Allow-Origin the browser refuses.
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Headers" not in response
    assert upstream.requests == []


def test_preflight_to_unrouted_path_is_answered_not_404(client: Any, db: Any) -> None:
    """The catch-all proxy view never sees a preflight: no route lookup, no problem+json."""
    response = preflight(client, "/nothing/routed/here", ALLOWED)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert response.content == b""


def test_plain_options_request_is_not_a_preflight_and_is_forwarded(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.options("/api/echo", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert json.loads(response.content)["method"] == "OPTIONS"
    assert len(upstream.requests) == 1


def test_actual_response_to_allowed_origin_exposes_mcp_headers(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    response = client.post("/mcp", json.dumps(INITIALIZE), content_type="application/json", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response["Mcp-Session-Id"].startswith("session-")
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    exposed = listed(response["Access-Control-Expose-Headers"])
    for name in EXPOSED_TO_BROWSERS:
        assert name.lower() in exposed, name
    assert "Access-Control-Allow-Credentials" not in response  # off unless configured


def test_gateway_errors_are_readable_by_allowed_origins(client: Any, db: Any) -> None:
    response = client.get("/nowhere", headers={"Origin": ALLOWED})
    assert response.status_code == 404
    assert response["Access-Control-Allow-Origin"] == ALLOWED


def test_response_to_foreign_origin_grants_nothing(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/echo", headers={"Origin": FOREIGN})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Expose-Headers" not in response


@override_settings(CORS_ALLOW_CREDENTIALS=True)
def test_credentials_allowed_only_when_configured(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    response = client.get("/api/echo", headers={"Origin": ALLOWED})
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert response["Access-Control-Allow-Origin"] == ALLOWED


def test_upstream_cannot_open_a_route_to_a_foreign_origin(client: Any, make_route: Any, wildcard_upstream: UpstreamServer) -> None:
    make_route("/api", wildcard_upstream.url)
    response = client.get("/api/echo", headers={"Origin": FOREIGN})
    assert response.status_code == 200
    assert json.loads(response.content)["path"] == "/echo"
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_upstream_cors_headers_are_replaced_by_the_gateways(client: Any, make_route: Any, wildcard_upstream: UpstreamServer) -> None:
    make_route("/api", wildcard_upstream.url)
    response = client.get("/api/echo", headers={"Origin": ALLOWED})
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Credentials" not in response
    assert "x-secret" not in listed(response["Access-Control-Expose-Headers"])


@pytest.mark.django_db
def test_admin_is_never_opened_cross_origin(client: Any) -> None:
    """The admin runs on a session cookie; no origin, however allowed, may read it."""
    response = client.get("/admin/login/", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in preflight(client, "/admin/login/", ALLOWED)


def test_cors_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_CORS_ALLOWED_ORIGINS": "https://a.example, http://localhost:5173",
        "GATEWAY_CORS_ALLOW_CREDENTIALS": "true",
        "GATEWAY_CORS_PREFLIGHT_MAX_AGE": "60",
    }
    result = settings_in_subprocess(env, CORS_SETTINGS_AS_JSON)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["https://a.example", "http://localhost:5173"], True, 60]


def test_cors_defaults_allow_no_origin(tmp_path: Path) -> None:
    result = settings_in_subprocess({"GATEWAY_DATA_DIR": str(tmp_path)}, CORS_SETTINGS_AS_JSON)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[], False, 7200]


def test_bad_max_age_refuses_to_start(tmp_path: Path) -> None:
    result = settings_in_subprocess({"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_CORS_PREFLIGHT_MAX_AGE": "a day"}, "1")
    assert result.returncode != 0
    assert "GATEWAY_CORS_PREFLIGHT_MAX_AGE must be an integer" in result.stderr


ROUTE_ONLY = "https://partner.example"


def test_route_may_allow_an_extra_origin_for_itself_only(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp/partner", upstream.url, kind="mcp", cors_allowed_origins=[ROUTE_ONLY])
    make_route("/mcp/internal", upstream.url, kind="mcp")
    granted = preflight(client, "/mcp/partner", ROUTE_ONLY)
    refused = preflight(client, "/mcp/internal", ROUTE_ONLY)
    assert granted["Access-Control-Allow-Origin"] == ROUTE_ONLY
    assert not refused.has_header("Access-Control-Allow-Origin")
    assert upstream.requests == []


def test_route_extra_origin_also_passes_the_mcp_origin_check(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp/partner", upstream.url, kind="mcp", cors_allowed_origins=[ROUTE_ONLY])
    make_route("/mcp/internal", upstream.url, kind="mcp")
    body = json.dumps(INITIALIZE)
    ok = client.post("/mcp/partner", body, content_type="application/json", headers={"Origin": ROUTE_ONLY})
    forbidden = client.post("/mcp/internal", body, content_type="application/json", headers={"Origin": ROUTE_ONLY})
    assert ok.status_code == 200 and ok["Access-Control-Allow-Origin"] == ROUTE_ONLY
    assert forbidden.status_code == 403
