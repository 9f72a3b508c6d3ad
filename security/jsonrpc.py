"""Reading a JSON-RPC message once, so every later stage shares the same parse.

Only the routing-relevant facts are pulled out (``method``, ``id``, ``params.name`` or
``params.uri``); the body itself is forwarded byte-exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RpcMessage:
    method: str = ""
    id: Any = None
    name: str = ""  # params.name of tools/call and prompts/get
    uri: str = ""  # params.uri of resources/read and resources/subscribe
    is_batch: bool = False
    is_notification: bool = False
    parse_error: str = ""  # the body is not JSON at all
    invalid: str = ""  # JSON, but not a JSON-RPC message
    payload: Any = None

    @property
    def subject(self) -> str:
        """What the ``Mcp-Name`` header mirrors: the tool or prompt name, or the resource uri."""
        return self.name or self.uri

    def content_fields(self) -> dict[str, str]:
        """What content matchers compare against (missing fields are left out)."""
        fields = {"method": self.method, "name": self.name, "uri": self.uri}
        return {key: value for key, value in fields.items() if value}


def _string_param(params: Any, key: str) -> str:
    value = params.get(key, "") if isinstance(params, dict) else ""
    return value if isinstance(value, str) else ""


def parse_rpc_message(body: bytes) -> RpcMessage:
    """Parse ``body``; never raises: a broken body is reported in ``parse_error``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return RpcMessage(parse_error=f"Parse error: {exc}")
    if isinstance(payload, list):
        first = payload[0] if payload and isinstance(payload[0], dict) else {}
        return RpcMessage(id=first.get("id"), is_batch=True, payload=payload)
    if not isinstance(payload, dict):
        return RpcMessage(invalid="Invalid Request: expected a JSON-RPC object", payload=payload)
    method = payload.get("method")
    return RpcMessage(
        method=method if isinstance(method, str) else "",
        id=payload.get("id"),
        name=_string_param(payload.get("params"), "name"),
        uri=_string_param(payload.get("params"), "uri"),
        is_notification="id" not in payload and isinstance(method, str),
        payload=payload,
    )
