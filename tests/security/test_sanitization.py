"""HTML-entity encoding of inputs on escape routes; byte-exact forwarding on off routes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from security.sanitization import escape_strings_in_place, safe_excerpt
from tests.upstream_server import UpstreamServer


def test_safe_excerpt_is_short_visible_and_escaped() -> None:
    assert safe_excerpt("<b>\r\n</b>" + "x" * 100, limit=10) == "&lt;b&gt;\\r\\n&lt;/b&gt;x…"


def test_escape_walks_deep_documents_without_recursion() -> None:
    document: Any = "<x>"
    for _ in range(5000):
        document = [document]
    escaped, changed = escape_strings_in_place(document)
    assert changed
    for _ in range(5000):
        escaped = escaped[0]
    assert escaped == "&lt;x&gt;"


def forwarded(upstream: UpstreamServer) -> tuple[bytes, dict[str, str]]:
    [request] = upstream.requests
    return request["body"], request["headers"]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ('{"title": "<b>Tom & Jerry</b>", "n": 1, "<k>": "ok"}', "application/json",
         b'{"title":"&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;","n":1,"<k>":"ok"}'),
        ("name=%3Cb%3E&x=1", "application/x-www-form-urlencoded", b"name=%26lt%3Bb%26gt%3B&x=1"),
        ('say "hi" <b>', "text/plain; charset=utf-8", b"say &quot;hi&quot; &lt;b&gt;"),
    ],
)
def test_escape_route_forwards_escaped_body_with_matching_length(
    client: Any, make_route: Any, upstream: UpstreamServer, body: str, content_type: str, expected: bytes
) -> None:
    make_route("/api", upstream.url + "/echo", kind="http", injection_detection="off")
    assert client.generic("POST", "/api", body, content_type=content_type).status_code == 200
    sent, headers = forwarded(upstream)
    assert sent == expected
    assert headers["Content-Length"] == str(len(expected))


def test_unchanged_body_stays_byte_exact(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url + "/echo", kind="http")
    body = '{ "plain" :  "text",  "n": 1.50 }'
    client.post("/api", body, content_type="application/json")
    assert forwarded(upstream)[0] == body.encode()


def test_mcp_route_defaults_to_byte_exact(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url + "/echo", kind="mcp", injection_detection="off")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "run_sql", "arguments": {"sql": "SELECT a FROM t WHERE a < 3 AND b = 'x'"}}})
    client.post("/mcp", body, content_type="application/json")
    assert forwarded(upstream)[0] == body.encode()


def test_mcp_route_set_to_escape_escapes_params_only(
    client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/mcp", upstream.url + "/echo", kind="mcp", injection_detection="off", sanitization="escape")
    message = {"jsonrpc": "2.0", "id": "<1>", "method": "tools/call", "params": {"name": "t", "arguments": {"s": "<b>"}}}
    client.post("/mcp", json.dumps(message), content_type="application/json")
    sent = json.loads(forwarded(upstream)[0])
    assert sent["id"] == "<1>"
    assert sent["params"]["arguments"]["s"] == "&lt;b&gt;"


def test_binary_bodies_are_left_alone(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/api", upstream.url + "/echo", kind="http")
    client.generic("POST", "/api", b"<\xff\x00>", content_type="application/octet-stream")
    assert forwarded(upstream)[0] == b"<\xff\x00>"
