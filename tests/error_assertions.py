"""The whole contract of the gateway's own errors, asserted the same way everywhere."""

from __future__ import annotations

import json
from typing import Any

from gateway_project.errors import JSONRPC_CONTENT_TYPE, PROBLEM_CONTENT_TYPE


def assert_problem(response: Any, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    body = json.loads(response.content)
    assert body["type"] == f"urn:mcp-gateway:error:{error_type}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def assert_jsonrpc_error(response: Any, status: int, error_type: str, request_id: Any, code: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    body = json.loads(response.content)
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == request_id
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["data"] == {"status": status, "type": error_type}
    return body
