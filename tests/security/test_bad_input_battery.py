"""Bad input through the whole pipeline, with the validation stages wired in their recommended
positions: each gets its own clear error, never a 500, and nothing reaches the upstream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_project.errors import (
    JSONRPC_INVALID_PARAMS,
    JSONRPC_INVALID_REQUEST,
    JSONRPC_PARSE_ERROR,
    PROBLEM_CONTENT_TYPE,
)
from tests.error_assertions import assert_jsonrpc_error
from tests.upstream_server import UpstreamServer

CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def mcp_route(monkeypatch: pytest.MonkeyPatch, make_route: Any, upstream: UpstreamServer) -> UpstreamServer:
    make_route("/mcp", upstream.url + "/echo", kind="mcp")
    return upstream


def post(client: Any, body: bytes | str, content_type: str = "application/json", **headers: str) -> Any:
    # CONTENT_TYPE given explicitly: the test client drops it for an empty body otherwise.
    return client.generic("POST", "/mcp", body, headers=headers, CONTENT_TYPE=content_type)


def test_a_valid_call_is_forwarded_unchanged(client: Any, mcp_route: UpstreamServer) -> None:
    body = json.dumps(CALL)
    response = post(client, body)
    assert response.status_code == 200
    assert len(mcp_route.requests) == 1
    assert json.loads(response.content)["body"] == body


@pytest.mark.parametrize(
    ("body", "status", "code", "error_type", "request_id"),
    [
        pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": ', 400, JSONRPC_PARSE_ERROR, "parse_error", None, id="truncated"),
        pytest.param(b"not json at all", 400, JSONRPC_PARSE_ERROR, "parse_error", None, id="not-json"),
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"t\xff\xfe"}', 400, JSONRPC_PARSE_ERROR, "parse_error", None, id="bad-utf8"),
        pytest.param(b"", 400, JSONRPC_PARSE_ERROR, "parse_error", None, id="empty"),
        pytest.param(b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', 400, JSONRPC_INVALID_REQUEST, "invalid_request", 1, id="v1.0"),
        pytest.param(b'{"jsonrpc": 2.0, "id": 1, "method": "ping"}', 400, JSONRPC_INVALID_REQUEST, "invalid_request", 1, id="v-number"),
        pytest.param(b'{"id": 1, "method": "ping"}', 400, JSONRPC_INVALID_REQUEST, "invalid_request", 1, id="v-missing"),
        pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": 7}', 400, JSONRPC_INVALID_REQUEST, "invalid_request", 1, id="method-number"),
        pytest.param(b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}', 400, JSONRPC_INVALID_REQUEST, "invalid_request", None, id="id-object"),
        pytest.param(b'{"jsonrpc": "2.0", "id": 2, "method": "ping", "params": "x"}', 400, JSONRPC_INVALID_REQUEST, "invalid_request", 2, id="params-string"),
        pytest.param(b'[1, "x", null]', 400, JSONRPC_INVALID_REQUEST, "invalid_request", None, id="batch-of-garbage"),
        pytest.param(b'"just a string"', 400, JSONRPC_INVALID_REQUEST, "invalid_request", None, id="bare-string"),
        pytest.param(DEEP, 400, JSONRPC_INVALID_REQUEST, "json_too_deep", None, id="100000-deep"),
        pytest.param(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}', 400, JSONRPC_INVALID_PARAMS, "invalid_params", 3, id="call-without-name"),
        pytest.param(b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":[1]}}', 400, JSONRPC_INVALID_PARAMS, "invalid_params", 4, id="call-list-arguments"),
        pytest.param(b'{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{}}', 400, JSONRPC_INVALID_PARAMS, "invalid_params", 5, id="read-without-uri"),
        pytest.param(b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"q","arguments":{"s":"\' OR \'1\'=\'1"}}}', 400, JSONRPC_INVALID_PARAMS, "injection_detected", 6, id="sqli"),
    ],
)
def test_bad_body_gets_its_error_and_is_never_forwarded(
    client: Any, mcp_route: UpstreamServer, body: bytes, status: int, code: int, error_type: str, request_id: Any
) -> None:
    assert_jsonrpc_error(post(client, body), status, error_type, request_id, code)
    assert mcp_route.requests == []


@pytest.mark.parametrize(
    ("content_type", "request_id"),
    [
        ("text/plain", None),  # not parsed, so the id is unreadable
        ("application/x-www-form-urlencoded", None),
        ("", None),
        ("application/json; charset=latin-1", 1),  # parsed (it is JSON), so the id is known
        ("application/json-rpc", 1),
    ],
)
def test_wrong_content_type_gets_415(client: Any, mcp_route: UpstreamServer, content_type: str, request_id: Any) -> None:
    response = post(client, json.dumps(CALL), content_type)
    assert_jsonrpc_error(response, 415, "unsupported_media_type", request_id, JSONRPC_INVALID_REQUEST)
    assert mcp_route.requests == []


@pytest.mark.parametrize(
    "headers",
    [{"X-Note": "a\r\nX-Injected: 1"}, {"X-Note": "a\nb"}, {"X-Note": "nul\x00byte"}, {"Mcp-Protocol-Version": "2025\r\n\r\nGET /"}],
)
def test_control_characters_in_headers_get_400(client: Any, mcp_route: UpstreamServer, headers: dict[str, str]) -> None:
    response = post(client, json.dumps(CALL), **headers)
    assert_jsonrpc_error(response, 400, "invalid_header", None, JSONRPC_INVALID_REQUEST)
    assert b"Injected" not in response.content and b"GET /" not in response.content
    assert mcp_route.requests == []


def test_huge_body_gets_413(client: Any, mcp_route: UpstreamServer, settings: Any) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    body = json.dumps({**CALL, "params": {"name": "echo", "arguments": {"text": "x" * 5000}}})
    assert_jsonrpc_error(post(client, body), 413, "payload_too_large", None, JSONRPC_INVALID_REQUEST)
    assert mcp_route.requests == []


def test_deep_json_on_an_http_route_gets_problem_json(
    client: Any, monkeypatch: pytest.MonkeyPatch, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/api", upstream.url + "/echo", kind="http")
    response = client.generic("POST", "/api", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(response.content)["type"] == "urn:mcp-gateway:error:json_too_deep"
    assert upstream.requests == []
