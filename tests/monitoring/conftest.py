"""Fixtures for the metrics and alerts: hand-driven flushing, stores on both backends, a second
upstream, and a real webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from monitoring.flush import stop_flusher
from monitoring.recorder import recorder
from monitoring.store import MemoryMetricsStore, RedisMetricsStore
from performance.pools import close_all_pools
from tests.gateway_project.conftest import REDIS_TEST_URL, Backend, unique_prefix
from tests.upstream_server import UpstreamServer

INTERVAL = 10
# A moment on an interval (and minute) boundary, so windows are easy to reason about.
T0 = 1_700_000_040.0
assert T0 % 60 == 0


@pytest.fixture(autouse=True)
def flushing_by_hand() -> Iterator[None]:
    """No background flusher (an earlier test in this process may have started one): each test
    flushes at the moments it chooses, from an empty recorder, with a 10 s interval."""
    stop_flusher()
    with override_settings(GATEWAY_METRICS_BACKGROUND_FLUSH=False, GATEWAY_METRICS_INTERVAL_SECONDS=INTERVAL):
        recorder.drain()
        yield
    recorder.drain()


@pytest.fixture
def metrics_store(backend: Backend) -> Iterator[Any]:
    """A metrics store of its own on the current backend (memory: the backend's fake clock)."""
    if backend.name == "memory":
        yield MemoryMetricsStore(clock=backend.clock)
        return
    prefix = unique_prefix()
    backend.prefixes.append(prefix)  # removed at teardown
    store = RedisMetricsStore(REDIS_TEST_URL, prefix=prefix)
    yield store
    store.close()


@pytest.fixture
def second_upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer().start()
    yield server
    close_all_pools()
    server.stop()


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.record(self.headers.get("Content-Type", ""), body)
        self.send_response(self.server.answer_status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver(ThreadingHTTPServer):
    """A real HTTP endpoint that keeps every JSON document POSTed to it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.answer_status = 204

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/alerts"

    def record(self, content_type: str, body: bytes) -> None:
        with self._lock:
            self.content_types.append(content_type)
            self.received.append(json.loads(body))


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()
