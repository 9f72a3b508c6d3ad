"""A real HTTP upstream for tests: a threaded server on a free port with scripted behaviours.

Paths (all under any prefix, so routes can point anywhere):
  /echo            200 JSON describing the request it received (method, path, query, headers, body)
  /status/<code>   that status with a JSON-RPC error body
  /sse             an event stream: ?events=N&delay=S, each event flushed on its own
  /slow-headers    waits ?seconds=S before answering (request timeout)
  /slow-body       headers at once, body after ?seconds=S (response timeout)
  /big             ?bytes=N of 'x' with Content-Length
  /drop            closes the connection without answering (after reading the request)
A JSON-RPC ``initialize`` body gets an ``Mcp-Session-Id`` answer header naming this server.
``forced_status`` makes every request answer that status (a failing or flapping upstream).
Every accepted connection's client port is recorded, so tests can prove connection reuse.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the gateway's pool can reuse connections
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to answers on reused connections
    server: UpstreamServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return

    def setup(self) -> None:
        super().setup()
        self.server.record_connection(self.client_address[1])

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record_request(self.command, parts.path, dict(self.headers.items()), body)
        leaf = parts.path.rstrip("/").rsplit("/", 2)
        if self.server.delay_seconds:
            time.sleep(self.server.delay_seconds)
        if self.server.forced_status is not None:
            self._status(self.server.forced_status)
        elif parts.path.endswith("/drop"):
            self.close_connection = True
            self.connection.shutdown(2)
        elif b'"method": "initialize"' in body or b'"method":"initialize"' in body:
            session_id = f"session-{self.server.server_address[1]}-{len(self.server.requests)}"
            self._send(200, b'{"jsonrpc":"2.0","id":1,"result":{}}', "application/json", {"Mcp-Session-Id": session_id})
        elif parts.path.endswith("/sse"):
            self._event_stream(int(query.get("events", 3)), float(query.get("delay", 0.2)))
        elif "/status/" in parts.path:
            self._status(int(leaf[-1]))
        elif parts.path.endswith("/slow-headers"):
            time.sleep(float(query.get("seconds", 2)))
            self._json(200, {"slow": True})
        elif parts.path.endswith("/slow-body"):
            self._slow_body(float(query.get("seconds", 2)))
        elif parts.path.endswith("/big"):
            self._send(200, b"x" * int(query.get("bytes", 1024)), "application/octet-stream")
        else:
            self._json(
                200,
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": parts.query,
                    "headers": dict(self.headers.items()),
                    "body": body.decode("utf-8", "replace"),
                },
            )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _send(self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.server.stall_body_seconds:
            self.wfile.flush()
            time.sleep(self.server.stall_body_seconds)
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, status: int, document: object) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", {"X-Upstream": "test"})

    def _status(self, code: int) -> None:
        error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": f"upstream said {code}"}}
        if code in (202, 204, 304):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._json(code, error)

    def _event_stream(self, events: int, delay: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for number in range(1, events + 1):
                self.wfile.write(f"id: {number}\ndata: {{\"event\": {number}, \"sent_at\": {time.time()}}}\n\n".encode())
                self.wfile.flush()
                if number < events:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            self.server.record_stream_cancelled()
        self.close_connection = True

    def _slow_body(self, seconds: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.flush()
        time.sleep(seconds)
        try:
            self.wfile.write(b"{}")
        except (BrokenPipeError, ConnectionResetError):
            pass


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self._lock = threading.Lock()
        self.connection_ports: list[int] = []
        self.requests: list[dict[str, object]] = []
        self.cancelled_streams = 0
        self.forced_status: int | None = None
        self.delay_seconds = 0.0  # added before every answer (a slow upstream)
        self.stall_body_seconds = 0.0  # between headers and body (an answer that breaks off)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client (the gateway) that hung up on purpose is not an error worth printing."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record_connection(self, port: int) -> None:
        with self._lock:
            self.connection_ports.append(port)

    def record_request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})

    def record_stream_cancelled(self) -> None:
        with self._lock:
            self.cancelled_streams += 1

    def start(self) -> UpstreamServer:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def run_forever_on(port: int) -> None:
    """Serve on ``port`` until killed (a separate process, so a test can kill it outright)."""
    server = UpstreamServer()
    server.server_close()
    ThreadingHTTPServer.__init__(server, ("127.0.0.1", port), UpstreamHandler)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    import sys

    run_forever_on(int(sys.argv[1]))
