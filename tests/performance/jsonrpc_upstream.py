"""A real JSON-RPC upstream for the batching and fan-out tests: a threaded server on a free port.

Methods (any path):
  echo                 {"server": <name>, "params": <params>}
  fail                 error -32001 "<name> said -32001"
  slow                 the echo result, after params.seconds
  tools/list           {"tools": [{"name": ..., "inputSchema": {"type": "object"}}, ...]} of ``tools``
  prompts/list         {"prompts": [{"name": ...}, ...]} of ``prompts``
  resources/list       {"resources": [{"uri": ..., "name": ...}, ...]} of ``resources``
  tools/call           {"content": [{"type": "text", "text": "<name>:<tool>"}]}
  anything else        error -32601
Notifications get no answer: 202 when sent alone, no entry in a batch. An array is answered with
an array when ``accepts_batches``, else with one -32600 error object (a server without batches).
``failing`` answers every call with the -32001 error; ``delay_seconds`` delays every answer;
``answer_with_events`` answers as an event stream (a progress notification, then the response),
as MCP's Streamable HTTP may. Every HTTP request is recorded with its parsed body, so tests count
upstream requests and the calls each carried.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from performance.pools import close_all_pools


class JsonRpcHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: JsonRpcUpstream

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        message = json.loads(body)
        self.server.record(message, dict(self.headers.items()), body)
        if self.server.delay_seconds:
            time.sleep(self.server.delay_seconds)
        if isinstance(message, list):
            answers = [self.server.answer(call) for call in message] if self.server.accepts_batches else None
            document: Any = [a for a in answers if a is not None] if answers is not None else {
                "jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Batches are not supported"}
            }
        else:
            document = self.server.answer(message)
        if document is None:
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.server.answer_with_events:
            self._events(document)
        else:
            self._json(document)

    def _json(self, document: Any) -> None:
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _events(self, document: Any) -> None:
        progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in (progress, document):
            self.wfile.write(b"event: message\ndata: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.flush()
        self.close_connection = True


class JsonRpcUpstream(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        name: str,
        *,
        tools: tuple[str, ...] = (),
        prompts: tuple[str, ...] = (),
        resources: tuple[str, ...] = (),
        accepts_batches: bool = True,
        failing: bool = False,
        answer_with_events: bool = False,
        delay_seconds: float = 0.0,
    ) -> None:
        super().__init__(("127.0.0.1", 0), JsonRpcHandler)
        self.name = name
        self.tools, self.prompts, self.resources = tools, prompts, resources
        self.accepts_batches = accepts_batches
        self.failing = failing
        self.answer_with_events = answer_with_events
        self.delay_seconds = delay_seconds
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # {"message", "headers", "body"} per HTTP request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, message: Any, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.requests.append({"message": message, "headers": headers, "body": body})

    def calls(self) -> list[dict[str, Any]]:
        """Every JSON-RPC message received, batches unpacked."""
        with self._lock:
            messages = [request["message"] for request in self.requests]
        return [call for message in messages for call in (message if isinstance(message, list) else [message])]

    def answer(self, call: dict[str, Any]) -> dict[str, Any] | None:
        if "id" not in call:
            return None
        result = self.result_of(call.get("method"), call.get("params") or {})
        if isinstance(result, int):
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": result, "message": f"{self.name} said {result}"}}
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    def result_of(self, method: Any, params: dict[str, Any]) -> dict[str, Any] | int:
        """The result of ``method``, or the error code it fails with."""
        if self.failing or method == "fail":
            return -32001
        if method == "echo":
            return {"server": self.name, "params": params}
        if method == "slow":
            time.sleep(float(params.get("seconds", 1)))
            return {"server": self.name, "params": params}
        if method == "tools/list":
            return {"tools": [{"name": tool, "inputSchema": {"type": "object"}} for tool in self.tools]}
        if method == "prompts/list":
            return {"prompts": [{"name": prompt} for prompt in self.prompts]}
        if method == "resources/list":
            return {"resources": [{"uri": uri, "name": uri.rsplit("/", 1)[-1]} for uri in self.resources]}
        if method == "tools/call":
            return {"content": [{"type": "text", "text": f"{self.name}:{params.get('name')}"}]}
        return -32601

    def start(self) -> JsonRpcUpstream:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@contextmanager
def running_upstreams() -> Iterator[Callable[..., JsonRpcUpstream]]:
    """``start(name, **options)`` starts an upstream; all of them stop at the end."""
    started: list[JsonRpcUpstream] = []

    def start(name: str, **options: Any) -> JsonRpcUpstream:
        server = JsonRpcUpstream(name, **options).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        close_all_pools()
        for server in started:
            server.stop()
