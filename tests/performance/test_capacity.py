"""A process at its in-flight maximum answers 503 at once instead of queueing silently."""

from __future__ import annotations

import json
from typing import Any

from django.test import override_settings

from performance.capacity import in_flight
from tests.upstream_server import UpstreamServer


@override_settings(GATEWAY_MAX_IN_FLIGHT=2)
def test_open_streams_up_to_the_limit_then_fast_503_until_one_closes(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url, kind="mcp")
    streams = [client.get("/mcp/sse?events=100&delay=0.1") for _ in range(2)]
    try:
        assert [stream.status_code for stream in streams] == [200, 200]
        assert in_flight.current == 2
        message = {"jsonrpc": "2.0", "id": 8, "method": "tools/list"}
        refused = client.post("/mcp/echo", json.dumps(message), content_type="application/json")
        assert refused.status_code == 503
        assert refused["Retry-After"] == "1"
        body = json.loads(refused.content)
        assert body["id"] == 8 and body["error"]["data"]["type"] == "gateway_busy"
        assert sum(1 for r in upstream.requests if str(r["path"]).endswith("/echo")) == 0
        streams[0].close()
        assert client.post("/mcp/echo", json.dumps(message), content_type="application/json").status_code == 200
    finally:
        for stream in streams:
            stream.close()
    assert in_flight.current == 0


def test_every_finished_exchange_gives_its_place_back(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url)
    for path in ("/api/echo", "/nowhere", "/api/status/503"):
        client.get(path)
    assert in_flight.current == 0
