"""Event streams are relayed event by event, and a client that leaves cancels the upstream."""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

from tests.live_servers import LiveGateway
from tests.upstream_server import UpstreamServer


def sent_at(chunk: bytes) -> float:
    data_line = next(line for line in chunk.decode().splitlines() if line.startswith("data: "))
    return float(json.loads(data_line[6:])["sent_at"])


def test_sse_events_arrive_before_the_next_is_sent(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    response = client.get("/mcp/sse?events=4&delay=0.3", headers={"Accept": "text/event-stream"})
    assert response.streaming
    assert response["Content-Type"] == "text/event-stream"
    arrivals: list[tuple[float, bytes]] = [(time.time(), chunk) for chunk in response.streaming_content]
    events = [chunk for _, chunk in arrivals if chunk.strip()]
    assert len(events) == 4
    # Unbuffered means each event reached us before the upstream even produced the next one.
    for (received, _chunk), (_later, next_chunk) in zip(arrivals, arrivals[1:]):
        assert received < sent_at(next_chunk)


def add_live_route(live_gateway: LiveGateway, upstream: UpstreamServer, kind: str = "mcp") -> str:
    """Route a fresh path to ``upstream`` through a management command in another process."""
    path = f"/live/{uuid.uuid4().hex[:8]}"
    live_gateway.manage("add_route", path, upstream.url, "--kind", kind, "--open")
    return path


def wait_for_route(live_gateway: LiveGateway, path: str, timeout: float = 5.0) -> float:
    """Seconds until the gateway process serves ``path``; fails the test after ``timeout``."""
    import urllib3

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if urllib3.request("GET", f"{live_gateway.url}{path}/echo", retries=False).status == 200:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{path} was not routed within {timeout}s")


def test_route_added_by_another_process_is_served_without_restart(live_gateway: LiveGateway, upstream: UpstreamServer) -> None:
    path = add_live_route(live_gateway, upstream, kind="http")
    waited = wait_for_route(live_gateway, path)
    assert waited < 5.0
    assert upstream.requests[-1]["path"] == "/echo"


def read_until(sock: socket.socket, marker: bytes, limit: int = 65536) -> bytes:
    received = b""
    while marker not in received and len(received) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_client_disconnect_closes_the_upstream_stream(live_gateway: LiveGateway, upstream: UpstreamServer) -> None:
    path = add_live_route(live_gateway, upstream)
    wait_for_route(live_gateway, path)
    sock = socket.create_connection(("127.0.0.1", live_gateway.port))
    sock.sendall(
        f"GET {path}/sse?events=100&delay=0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    first = read_until(sock, b"data: ")
    assert b"200 OK" in first and b"text/event-stream" in first.lower()
    sock.close()
    deadline = time.monotonic() + 10
    while upstream.cancelled_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.cancelled_streams == 1
    sse_requests = [r for r in upstream.requests if str(r["path"]).endswith("/sse")]
    assert len(sse_requests) == 1


def test_sse_through_the_live_server_is_unbuffered(live_gateway: LiveGateway, upstream: UpstreamServer) -> None:
    path = add_live_route(live_gateway, upstream)
    wait_for_route(live_gateway, path)
    sock = socket.create_connection(("127.0.0.1", live_gateway.port))
    sock.sendall(f"GET {path}/sse?events=3&delay=0.4 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = read_until(sock, b"data: ")
    first_event_seen = time.time()
    rest = b""
    while rest.count(b"data: ") < 2:
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
    sock.close()
    second_event = rest[rest.index(b"data: ") :]
    assert b"data: " in head
    assert first_event_seen < sent_at(second_event)


def test_client_leaving_a_silent_stream_frees_the_gateway_at_the_next_keepalive(
    live_gateway: LiveGateway, upstream: UpstreamServer
) -> None:
    """The upstream stays silent for 30 s; the gateway still notices the client left within seconds."""
    path = add_live_route(live_gateway, upstream)
    wait_for_route(live_gateway, path)
    sock = socket.create_connection(("127.0.0.1", live_gateway.port))
    sock.sendall(f"GET {path}/sse?events=2&delay=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert b"data: " in read_until(sock, b"data: ")
    sock.close()
    line = f'path="{path}/sse"'
    deadline = time.monotonic() + 10  # keep-alives every 0.5 s in the test gateway
    while line not in live_gateway.access_log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line in live_gateway.access_log(), "the exchange never finished: the thread is still held"


def test_silent_stream_gets_keepalive_comments_between_events(client: Any, make_route: Any, upstream: UpstreamServer, settings: Any) -> None:
    settings.GATEWAY_STREAM_KEEPALIVE_SECONDS = 0.1
    make_route("/mcp", upstream.url, kind="mcp")
    response = client.get("/mcp/sse?events=2&delay=0.5")
    chunks = [chunk for chunk in response.streaming_content if chunk]
    events = [chunk for chunk in chunks if chunk.startswith(b"id: ")]
    comments = [chunk for chunk in chunks if chunk == b": keep-alive\n\n"]
    assert len(events) == 2
    assert len(comments) >= 2  # 0.5 s of silence, a comment every 0.1 s
    assert chunks.index(events[1]) > chunks.index(comments[0])
