"""A legacy-only MCP server for the health-check tests, run as a process of its own.

The SDK 2.x server answers both protocol eras, so this puts the real SDK server (the demo's
tools, real sessions) behind a filter that refuses 2026-07-28 requests the way a 2025-era
server (SDK 1.x) does, and counts what arrives:

    python -m tests.routing.legacy_mcp_server --port 9200

Two endpoints, one per refusal a 2025 server gives a session-less ``server/discover``:
  /session-era/mcp   400, JSON-RPC -32600 "Bad Request: Missing session ID" (stateful 1.x)
  /version-era/mcp   400, JSON-RPC -32600 "Bad Request: Unsupported protocol version" (stateless 1.x)
``GET /calls`` answers, per endpoint, the JSON-RPC methods and DELETEs seen, and the session ids
the server handed out and the ones a DELETE ended.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demo.mcp_server import demo

MCP_PATH = "/mcp"
MODERN_VERSIONS = frozenset({"2026-07-28"})
SUPPORTED_LEGACY = "2024-11-05, 2025-03-26, 2025-06-18"
REFUSALS = {
    "session-era": "Bad Request: Missing session ID",
    "version-era": "Bad Request: Unsupported protocol version: {version}. Supported protocol versions: "
    + SUPPORTED_LEGACY,
}


def _empty_calls() -> dict[str, Any]:
    return {"methods": [], "deletes": 0, "sessions_opened": [], "sessions_ended": []}


class LegacyOnly:
    """ASGI filter: refuse modern requests like a 2025 server, record everything else, pass it on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: dict[str, dict[str, Any]] = defaultdict(_empty_calls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/calls":
            await _send_json(send, 200, self.calls)
            return
        era, _, rest = scope["path"].lstrip("/").partition("/")
        if era not in REFUSALS or "/" + rest != MCP_PATH:
            await _send_json(send, 404, {"error": "unknown endpoint"})
            return
        await self._serve(era, {**scope, "path": MCP_PATH, "raw_path": MCP_PATH.encode()}, receive, send)

    async def _serve(self, era: str, scope: Scope, receive: Receive, send: Send) -> None:
        calls = self.calls[era]
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        body = await _read_body(receive)
        if scope["method"] == "POST":
            calls["methods"].append(_method_of(body))
        version = headers.get("mcp-protocol-version", "")
        if version in MODERN_VERSIONS:
            error = {"code": -32600, "message": REFUSALS[era].format(version=version)}
            await _send_json(send, 400, {"jsonrpc": "2.0", "id": "server-error", "error": error})
            return
        if scope["method"] == "DELETE":
            calls["deletes"] += 1

        replayed = False

        async def replay() -> Message:
            # The body once, then the real channel (which reports the client's disconnect).
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def record_sessions(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._record_session(calls, scope["method"], message, headers.get("mcp-session-id"))
            await send(message)

        await self.app(scope, replay, record_sessions)

    @staticmethod
    def _record_session(calls: dict[str, Any], method: str, start: Message, sent_session: str | None) -> None:
        answered = {name.decode().lower(): value.decode() for name, value in start.get("headers", [])}
        new_session = answered.get("mcp-session-id")
        if method == "POST" and new_session and new_session != sent_session:
            calls["sessions_opened"].append(new_session)
        if method == "DELETE" and sent_session and start["status"] == 200:
            calls["sessions_ended"].append(sent_session)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def _method_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("method"))
    except (ValueError, AttributeError):
        return "<not JSON-RPC>"


async def _send_json(send: Send, status: int, document: Any) -> None:
    payload = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = LegacyOnly(demo.streamable_http_app(streamable_http_path=MCP_PATH, host="127.0.0.1"))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
