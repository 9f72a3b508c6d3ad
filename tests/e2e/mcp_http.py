"""Raw-HTTP helpers for the MCP end-to-end tests: JSON-RPC posts, SSE parsing, answer comparison.

The gateway claims to pass MCP Streamable HTTP through intact, so the strongest check is to send
the same raw request to the gateway and straight to the demo server and compare the answers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3

LEGACY_VERSION = "2025-06-18"
MODERN_VERSION = "2026-07-28"
STREAMABLE_ACCEPT = "application/json, text/event-stream"
HEADER_MISMATCH = -32020
SESSION_NOT_FOUND = -32600  # the SDK answers an unknown session with INVALID_REQUEST
METHOD_NOT_FOUND = -32601

# Headers a proxy legitimately changes (hop-by-hop) or that differ between two sends anyway.
NOT_COMPARED_HEADERS = frozenset({"date", "connection", "keep-alive", "transfer-encoding"})

HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=30.0))


def direct_url(demo_server_port: int) -> str:
    """The demo server's own MCP endpoint, bypassing the gateway."""
    return f"http://127.0.0.1:{demo_server_port}/mcp"


def gateway_url(live_gateway: Any) -> str:
    return f"{live_gateway.url}/mcp/demo"


@dataclass(frozen=True)
class Answer:
    """What a client sees of one HTTP answer (header names lower-cased)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def messages(self) -> list[Any]:
        """The JSON-RPC messages in the body, whether it is plain JSON or an event stream."""
        if self.content_type.startswith("text/event-stream"):
            return sse_data_messages(self.body.decode())
        return [json.loads(self.body)] if self.body else []

    def json(self) -> Any:
        return json.loads(self.body)


def _answer(response: urllib3.BaseHTTPResponse) -> Answer:
    return Answer(
        status=response.status,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=response.data,
    )


def request(method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None) -> Answer:
    """Send one request and read the whole answer."""
    return _answer(HTTP.request(method, url, body=body, headers=dict(headers or {})))


def post_jsonrpc(url: str, message: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Answer:
    """POST one JSON-RPC message the way a Streamable HTTP client does."""
    all_headers = {"Accept": STREAMABLE_ACCEPT, "Content-Type": "application/json", **(headers or {})}
    return request("POST", url, all_headers, json.dumps(message).encode())


def open_stream(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
) -> urllib3.BaseHTTPResponse:
    """Send a request and return as soon as the status and headers have arrived."""
    return HTTP.request(method, url, body=body, headers=dict(headers), preload_content=False)


def sse_data_messages(text: str) -> list[Any]:
    """The JSON payloads of the ``data:`` lines of an event stream, one per event, in order."""
    messages = []
    for event in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        data = [line[5:].removeprefix(" ") for line in re.split(r"\r\n|\n|\r", event) if line.startswith("data:")]
        if data:
            messages.append(json.loads("\n".join(data)))
    return messages


@dataclass
class TimedEvents:
    """SSE messages in arrival order, each with the monotonic time its last byte arrived."""

    raw: bytes = b""
    arrivals: list[tuple[float, Any]] = field(default_factory=list)


def read_events_as_they_arrive(response: urllib3.BaseHTTPResponse) -> TimedEvents:
    """Read an event stream to its end, timestamping every complete event on arrival."""
    timed = TimedEvents()
    pending = b""
    try:
        for chunk in iter(lambda: response.read1(65536), b""):
            now = time.monotonic()
            timed.raw += chunk
            pending += chunk
            while (end := _event_end(pending)) is not None:
                event, pending = pending[:end], pending[end:]
                timed.arrivals.extend((now, message) for message in sse_data_messages(event.decode()))
    finally:
        response.release_conn()
    return timed


def _event_end(buffer: bytes) -> int | None:
    ends = [index + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (index := buffer.find(sep)) >= 0]
    return min(ends) if ends else None


# --- 2026-07-28 (stateless era) requests --------------------------------------------------------


def modern_message(request_id: int, method: str, params: Mapping[str, Any] | None = None, **meta: Any) -> dict:
    """A 2026-07-28 request: the protocol envelope travels in ``params._meta`` of every request."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        **meta,
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": envelope}}


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    """The routing headers a 2026-07-28 client sends beside the body."""
    headers = {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


# --- comparing the gateway's answer with the upstream's own --------------------------------------


def assert_relayed_intact(via_gateway: Answer, direct: Answer) -> None:
    """The gateway's answer carries the upstream's status, body and every end-to-end header.

    Session ids differ between two sessions, so only their presence is compared. Headers the
    gateway adds of its own (security headers) are not an error here.
    """
    assert via_gateway.status == direct.status
    assert via_gateway.body == direct.body
    for name, value in direct.headers.items():
        if name in NOT_COMPARED_HEADERS:
            continue
        assert name in via_gateway.headers, f"the upstream's {name} header was lost"
        if name != "mcp-session-id":
            assert via_gateway.headers[name] == value, f"the upstream's {name} header was changed"


def tool_names(result_message: Mapping[str, Any]) -> set[str]:
    return {tool["name"] for tool in result_message["result"]["tools"]}


def access_lines(log_text: str, *, rpc: str, status: int, demo_port: int, method: str = "POST") -> list[str]:
    """Access-log lines of requests to /mcp/demo forwarded to the demo server."""
    pattern = re.compile(
        rf'gateway\.access method={method} path="/mcp/demo" route=demo '
        rf"target=http://127\.0\.0\.1:{demo_port}/mcp rpc={re.escape(rpc)} principal=\S+ status={status} "
    )
    return [line for line in log_text.splitlines() if pattern.search(line)]


def count_access_lines(live_gateway: Any, *, rpc: str, status: int, method: str = "POST") -> int:
    """How many matching lines the live gateway's access log holds right now."""
    log = live_gateway.access_log()
    return len(access_lines(log, rpc=rpc, status=status, demo_port=live_gateway.demo_port, method=method))


def wait_for_access_lines(
    live_gateway: Any, count: int, *, rpc: str, status: int, method: str = "POST", timeout: float = 10.0
) -> list[str]:
    """Poll the access log until it holds at least ``count`` matching lines (a streamed exchange
    is logged when its stream closes, which may be just after the client read the last byte)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = access_lines(
            live_gateway.access_log(), rpc=rpc, status=status, demo_port=live_gateway.demo_port, method=method
        )
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)

