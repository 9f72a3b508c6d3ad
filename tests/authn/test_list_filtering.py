"""List answers filtered by the caller's permissions: the stage called directly on JSON and SSE
answers (split anywhere, streamed chunk by chunk), then through the real pipeline (Django test
client, real API keys, the real demo MCP server as upstream) in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory, override_settings

from authn import list_filtering
from authn.errors import JSONRPC_FORBIDDEN
from authn.list_filtering import ANSWER_TOO_LARGE, UnfilterableListAnswer, filter_listed_items
from authn.permissions import Grants
from authn.principal import Principal
from gateway_project import pipeline
from gateway_project.exchange import Exchange
from routing.snapshot import RouteConfig, get_snapshot
from security import tool_schemas
from security.api_keys import issue_api_key
from security.jsonrpc import parse_rpc_message
from tests.e2e.mcp_http import LEGACY_VERSION, STREAMABLE_ACCEPT, modern_headers, modern_message

SERVICE = "demo"
ALL_DEMO_TOOLS = {"echo", "add", "countdown", "fail"}

TOOLS = [{"name": "add", "inputSchema": {"type": "object"}}, {"name": "echo"}, {"name": "countdown"}]
PROMPTS = [{"name": "greet", "arguments": []}, {"name": "summarize"}]
RESOURCES = [{"uri": "demo://readme", "name": "readme"}, {"uri": "demo://secrets", "name": "secrets"}]
# What a principal holding only ADD_ONLY sees of TOOLS.
ADD_ONLY = ["tool:demo:add"]


def list_answer(items_key: str, items: list[Any], request_id: Any = 7) -> dict[str, Any]:
    """A list answer with every field the filter must leave alone."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {items_key: items, "nextCursor": "page-2", "_meta": {"trace": "t-1"}, "ttlMs": 0},
    }


TOOLS_ANSWER = list_answer("tools", TOOLS)
FILTERED_TOOLS_ANSWER = list_answer("tools", TOOLS[:1])
PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
# A notification that mentions "result" goes through the parser, and must come out untouched too.
LOG_MENTIONING_RESULT = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": {"result": [1]}}}
KEEPALIVE = b": keep-alive\n\n"


# --- building exchanges and answers ---------------------------------------------------------------


@pytest.fixture
def route(make_route: Any) -> RouteConfig:
    """An MCP route to the service "demo" that checks tool permissions."""
    made = make_route("/mcp", "http://127.0.0.1:9/mcp", name=SERVICE, kind="mcp", allow_anonymous=False, tool_permissions=True)
    return route_config(made.id)


def route_config(route_id: int) -> RouteConfig:
    return next(config for config in get_snapshot().routes if config.id == route_id)


def exchange_for(route: RouteConfig, request: Any, grants: list[str]) -> Exchange:
    body = json.dumps(request).encode()
    exchange = Exchange(request=RequestFactory().post("/mcp", body, content_type="application/json"))
    exchange.route = route
    exchange.rpc = parse_rpc_message(body)
    exchange.principal = Principal("key:1", grants=Grants.of(grants), api_key_id="1")
    return exchange


def list_request(method: str = "tools/list", request_id: Any = 7) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {}}


def json_answer(message: Any, status: int = 200) -> HttpResponse:
    body = json.dumps(message).encode() if not isinstance(message, bytes) else message
    response = HttpResponse(body, status=status, content_type="application/json")
    response["Content-Length"] = str(len(body))
    return response


def sse_answer(chunks: Any, status: int = 200) -> StreamingHttpResponse:
    return StreamingHttpResponse(chunks, status=status, content_type="text/event-stream")


def sse_event(message: Any, newline: str = "\n") -> bytes:
    """An event as the MCP SDK writes one: an event type line, one data line, a blank line."""
    return f"event: message{newline}data: {json.dumps(message)}{newline}{newline}".encode()


def chunks_of(response: Any) -> Iterator[bytes]:
    """What the server would write of a streamed answer (the gateway builds only sync streams)."""
    return cast(Iterator[bytes], response.streaming_content)


def cut(data: bytes, *positions: int) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:])]


def messages_in(stream: bytes) -> list[Any]:
    """The JSON payloads of an event stream's data lines, one per event."""
    text = stream.decode().replace("\r\n", "\n")
    events = [event for event in text.split("\n\n") if event.strip()]
    datas = ["\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")) for event in events]
    return [json.loads(data) for data in datas if data]


def close_as_the_server_does(response: HttpResponse | StreamingHttpResponse) -> None:
    """The WSGI server's close at the end of a response, without Django's end-of-request database
    cleanup (as the test client does too), which would end the test's own transaction."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def filtered_json(route: RouteConfig, answer: Any, grants: list[str], request: Any = None, status: int = 200) -> HttpResponse:
    response = json_answer(answer, status)
    filter_listed_items(exchange_for(route, request or list_request(), grants), response)
    return response


# --- complete JSON answers -------------------------------------------------------------------------


def test_tools_list_json_answer_keeps_only_granted_tools_and_every_other_field(route: RouteConfig) -> None:
    response = filtered_json(route, TOOLS_ANSWER, ADD_ONLY)

    assert json.loads(response.content) == FILTERED_TOOLS_ANSWER
    assert response["Content-Length"] == str(len(response.content))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "items_key", "items", "grants", "kept"),
    [
        ("prompts/list", "prompts", PROMPTS, ["prompt:demo:greet"], PROMPTS[:1]),
        ("resources/list", "resources", RESOURCES, ["resource:demo:demo://readme"], RESOURCES[:1]),
        ("resources/list", "resources", RESOURCES, ["resource:demo:demo://*"], RESOURCES),
        # A tool grant is not a prompt grant: the kinds do not leak into each other.
        ("prompts/list", "prompts", PROMPTS, ["tool:demo:greet", "tool:*"], []),
        ("tools/list", "tools", TOOLS, ["tool:other:add", "tool:demo:ad"], []),
        ("tools/list", "tools", TOOLS, ["tool:demo:add", "tool:demo:echo"], TOOLS[:2]),
    ],
)
def test_each_list_is_filtered_by_its_own_kind_of_permission(
    route: RouteConfig, method: str, items_key: str, items: list[Any], grants: list[str], kept: list[Any]
) -> None:
    response = filtered_json(route, list_answer(items_key, items), grants, list_request(method))

    assert json.loads(response.content) == list_answer(items_key, kept)


def test_items_without_a_string_name_are_dropped(route: RouteConfig) -> None:
    """No permission can be checked for them, so nobody below '*' sees them."""
    tools = [{"name": "add"}, {"name": 5}, {"title": "no name"}, "add", None]
    response = filtered_json(route, list_answer("tools", tools), ADD_ONLY)

    assert json.loads(response.content)["result"]["tools"] == [{"name": "add"}]


def test_a_batch_answer_is_filtered_per_list_call_and_other_responses_stay(route: RouteConfig) -> None:
    batch = [list_request("tools/list", 1), {"jsonrpc": "2.0", "id": 2, "method": "ping"}, list_request("prompts/list", "p")]
    pong_mentioning_tools = {"jsonrpc": "2.0", "id": 2, "result": {"tools": TOOLS}}
    answer = [list_answer("tools", TOOLS, 1), pong_mentioning_tools, list_answer("prompts", PROMPTS, "p")]

    response = filtered_json(route, answer, ["tool:demo:echo", "prompt:demo:summarize"], batch)

    assert json.loads(response.content) == [
        list_answer("tools", TOOLS[1:2], 1),
        pong_mentioning_tools,
        list_answer("prompts", PROMPTS[1:], "p"),
    ]


# --- event streams ---------------------------------------------------------------------------------


def event_cuts(event: bytes, newline: str) -> dict[str, list[int]]:
    """Awkward places to split one event: inside "data:", inside the JSON, inside the blank line."""
    data_at = event.index(b"data:")
    blank_at = event.rindex((newline * 2).encode())
    return {
        "inside data:": [data_at + 2],
        "inside the json": [data_at + 30, data_at + 31],
        "inside the blank line": [blank_at + 1] if newline == "\n" else [blank_at + 1, blank_at + 2, blank_at + 3],
        "everywhere at once": [data_at + 2, data_at + 40, blank_at + 1],
        "one byte at a time": list(range(1, len(event))),
    }


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("where", ["inside data:", "inside the json", "inside the blank line", "everywhere at once", "one byte at a time"])
def test_sse_answer_split_at_awkward_places_is_filtered(route: RouteConfig, newline: str, where: str) -> None:
    before, answer, after = sse_event(PROGRESS, newline), sse_event(TOOLS_ANSWER, newline), sse_event(PROGRESS, newline)
    chunks = [before, *cut(answer, *event_cuts(answer, newline)[where]), after]
    response = sse_answer(iter(chunks))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)
    relayed = list(chunks_of(response))

    assert len(relayed) == len(chunks)  # one chunk out for every chunk in
    assert (relayed[0], relayed[-1]) == (before, after)  # the other events byte for byte
    # Held back while incomplete, released whole with its last byte.
    assert all(chunk == b"" for chunk in relayed[1:-2])
    rewritten = relayed[-2]
    assert messages_in(rewritten) == [FILTERED_TOOLS_ANSWER]
    assert rewritten.startswith(b"event: message" + newline.encode())
    assert rewritten.endswith((newline * 2).encode())
    assert rewritten.count(newline.encode()) == 3  # event line, one data line, the blank line


def test_keepalive_and_notifications_before_the_answer_pass_before_the_answer_arrives(route: RouteConfig) -> None:
    answer = sse_event(TOOLS_ANSWER)
    sent: list[str] = []

    def upstream() -> Iterator[bytes]:
        sent.append("keep-alive")
        yield KEEPALIVE
        sent.append("progress")
        yield sse_event(PROGRESS)
        sent.append("answer, first half")
        yield answer[:40]
        sent.append("answer, second half")
        yield answer[40:]

    response = sse_answer(upstream())
    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)
    relayed = iter(chunks_of(response))

    assert next(relayed) == KEEPALIVE and sent == ["keep-alive"]
    assert next(relayed) == sse_event(PROGRESS) and sent == ["keep-alive", "progress"]
    assert next(relayed) == b""  # half an event is held back, not relayed
    assert messages_in(next(relayed)) == [FILTERED_TOOLS_ANSWER]
    assert next(relayed, None) is None


def test_notifications_pass_byte_for_byte_even_when_they_mention_result(route: RouteConfig) -> None:
    chunks = [sse_event(LOG_MENTIONING_RESULT, "\r\n"), KEEPALIVE, sse_event(PROGRESS)]
    response = sse_answer(iter(chunks))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)

    assert list(chunks_of(response)) == chunks


def test_an_event_cut_off_by_the_end_of_the_stream_is_still_filtered(route: RouteConfig) -> None:
    """A lenient client might read an event without its blank line: it never carries hidden tools."""
    unterminated = f"data: {json.dumps(TOOLS_ANSWER)}".encode()
    response = sse_answer(iter([KEEPALIVE, unterminated]))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)
    relayed = b"".join(chunks_of(response))

    assert relayed == KEEPALIVE + f"data: {json.dumps(FILTERED_TOOLS_ANSWER, separators=(',', ':'))}".encode()


def test_a_list_spread_over_several_data_lines_comes_out_as_one_data_line(route: RouteConfig) -> None:
    pretty = json.dumps(TOOLS_ANSWER, indent=1).replace("\n", "\ndata: ")
    event = f"id: 42\nevent: message\ndata: {pretty}\nretry: 500\n\n".encode()
    response = sse_answer(iter([event]))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)
    relayed = b"".join(chunks_of(response))

    compact = json.dumps(FILTERED_TOOLS_ANSWER, separators=(",", ":"))
    assert relayed == f"id: 42\nevent: message\ndata: {compact}\nretry: 500\n\n".encode()


def test_an_event_stream_read_whole_is_filtered_too(route: RouteConfig) -> None:
    body = KEEPALIVE + sse_event(TOOLS_ANSWER, "\r\n")
    response = HttpResponse(body, content_type="text/event-stream")
    response["Content-Length"] = str(len(body))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)

    assert response.content.startswith(KEEPALIVE)
    assert messages_in(response.content) == [FILTERED_TOOLS_ANSWER]
    assert response["Content-Length"] == str(len(response.content))


def test_a_streamed_json_answer_is_gathered_and_filtered(route: RouteConfig) -> None:
    """A JSON answer of unknown length arrives as a stream; it is one document, filtered whole."""
    body = json.dumps(TOOLS_ANSWER).encode()
    response = StreamingHttpResponse(iter(cut(body, 10, 50)), content_type="application/json")
    response["Content-Length"] = str(len(body))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)

    assert json.loads(b"".join(chunks_of(response))) == FILTERED_TOOLS_ANSWER
    assert not response.has_header("Content-Length")


class ClosableUpstream:
    """An upstream stream that records being closed, as forwarding's RelayedStream is."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)
        self.closed = False

    def __iter__(self) -> ClosableUpstream:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self.closed = True


def test_closing_the_response_mid_stream_closes_the_upstream_stream(route: RouteConfig) -> None:
    upstream = ClosableUpstream([KEEPALIVE, sse_event(TOOLS_ANSWER)])
    response = sse_answer(upstream)
    exchange = exchange_for(route, list_request(), ADD_ONLY)
    filter_listed_items(exchange, response)
    # As in production: the pipeline wraps the stream so the exchange finishes when it closes.
    pipeline_stream = pipeline.FinishOnClose(exchange, iter(chunks_of(response)))
    response.streaming_content = pipeline_stream

    assert next(iter(response)) == KEEPALIVE
    close_as_the_server_does(response)

    assert upstream.closed


@pytest.mark.parametrize("stream_class", [list_filtering.FilteredEventStream, list_filtering.GatheredJsonAnswer])
def test_closing_a_filtered_stream_closes_the_stream_it_wraps(route: RouteConfig, stream_class: Any) -> None:
    upstream = ClosableUpstream([KEEPALIVE])
    list_filter = list_filtering.list_filter_for(exchange_for(route, list_request(), ADD_ONLY))
    assert list_filter is not None

    stream_class(upstream, list_filter, lambda: b"").close()

    assert upstream.closed


def test_an_event_too_large_to_hold_ends_the_stream_with_a_jsonrpc_error(
    route: RouteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(list_filtering, "MAX_LIST_ANSWER_BYTES", 64)
    answer = sse_event(TOOLS_ANSWER)
    upstream = ClosableUpstream([KEEPALIVE, answer[:50], answer[50:100], answer[100:], sse_event(PROGRESS)])
    response = sse_answer(upstream)
    exchange = exchange_for(route, list_request(), ADD_ONLY)

    filter_listed_items(exchange, response)
    relayed = list(chunks_of(response))

    assert relayed[:2] == [KEEPALIVE, b""]
    [refusal] = messages_in(relayed[2])
    assert refusal["id"] == 7 and refusal["error"]["message"] == ANSWER_TOO_LARGE
    assert refusal["error"]["data"] == {"status": 502, "type": UnfilterableListAnswer.code}
    assert len(relayed) == 3  # nothing after the refusal, not even the progress event
    close_as_the_server_does(response)
    assert upstream.closed
    assert exchange.error_code == UnfilterableListAnswer.code


# --- answers left alone ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "Method not found"}},
        {"jsonrpc": "2.0", "id": 7, "result": {"tools": "not a list"}},
        {"jsonrpc": "2.0", "id": 7, "result": {"nextCursor": "x"}},
    ],
    ids=["error", "tools not a list", "no tools"],
)
def test_answers_without_a_list_are_untouched(route: RouteConfig, answer: Any) -> None:
    body = json.dumps(answer).encode()
    response = filtered_json(route, body, ADD_ONLY)

    assert response.content == body


def test_an_sse_error_answer_is_untouched(route: RouteConfig) -> None:
    error = {"jsonrpc": "2.0", "id": 7, "error": {"code": -32603, "message": "the result was lost"}}
    chunks = [sse_event(error)[:20], sse_event(error)[20:]]
    response = sse_answer(iter(chunks))

    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), response)

    assert b"".join(chunks_of(response)) == b"".join(chunks)


@pytest.mark.parametrize("status", [199, 300, 403, 500, 502])
def test_answers_outside_2xx_are_untouched(route: RouteConfig, status: int) -> None:
    body = json.dumps(TOOLS_ANSWER).encode()
    assert filtered_json(route, body, ADD_ONLY, status=status).content == body


@pytest.mark.parametrize(
    "route_fields",
    [{"kind": "mcp", "tool_permissions": False}, {"kind": "http", "tool_permissions": True}],
    ids=["mcp without tool permissions", "http route"],
)
def test_routes_that_do_not_check_tool_permissions_are_untouched(make_route: Any, route_fields: dict[str, Any]) -> None:
    made = make_route("/other", "http://127.0.0.1:9/mcp", allow_anonymous=False, **route_fields)
    body = json.dumps(TOOLS_ANSWER).encode()

    assert filtered_json(route_config(made.id), body, ADD_ONLY).content == body


@pytest.mark.parametrize(
    "request_message",
    [
        list_request("resources/templates/list"),
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add"}},
        [{"jsonrpc": "2.0", "id": 7, "method": "ping"}],
    ],
    ids=["templates", "tools/call", "batch without a list call"],
)
def test_other_methods_are_untouched(route: RouteConfig, request_message: Any) -> None:
    body = json.dumps(TOOLS_ANSWER).encode()
    assert filtered_json(route, body, ADD_ONLY, request_message).content == body


@pytest.mark.parametrize("grant", ["*", "tool:*", "tool:*:*", "tool:demo:*", "tool:d*:*"])
def test_the_fast_path_leaves_the_body_as_the_upstream_sent_it(route: RouteConfig, grant: str) -> None:
    """A nameless item would be dropped by filtering: here it stays, so nothing was parsed."""
    body = json.dumps(list_answer("tools", [*TOOLS, {"title": "nameless"}]), indent=2).encode()
    json_response = filtered_json(route, body, [grant])
    stream_response = sse_answer(iter([body[:5], body[5:]]))
    filter_listed_items(exchange_for(route, list_request(), [grant]), stream_response)

    assert json_response.content == body
    assert list(chunks_of(stream_response)) == [body[:5], body[5:]]


@pytest.mark.parametrize("body", [b'{"jsonrpc": "2.0", "id": 7, "result": {"tools": [', b"\xff\xfe not json", b"[" * 50_000 + b"]" * 50_000])
def test_malformed_json_passes_through_unchanged(route: RouteConfig, body: bytes) -> None:
    json_response = filtered_json(route, body, ADD_ONLY)
    event = b'data: {"result": {"tools": [{"name": "echo"}\n\n'
    stream_response = sse_answer(iter([event[:9], event[9:]]))
    filter_listed_items(exchange_for(route, list_request(), ADD_ONLY), stream_response)

    assert (json_response.status_code, json_response.content) == (200, body)
    assert b"".join(chunks_of(stream_response)) == event


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_a_compressed_list_answer_becomes_a_502_jsonrpc_error(route: RouteConfig, streamed: bool) -> None:
    """The gateway cannot read it, so it cannot filter it: it is never relayed unfiltered."""
    upstream = ClosableUpstream([b"\x1f\x8b compressed bytes"])
    response = sse_answer(upstream) if streamed else json_answer(b"\x1f\x8b compressed bytes")
    response["Content-Encoding"] = "gzip"
    exchange = exchange_for(route, list_request(), ADD_ONLY)

    filter_listed_items(exchange, response)
    body = b"".join(chunks_of(response)) if streamed else response.content
    close_as_the_server_does(response)

    error = json.loads(body)
    assert response.status_code == 502 and response["Content-Type"] == "application/json"
    assert error["id"] == 7 and "compressed (gzip)" in error["error"]["message"]
    assert error["error"]["data"] == {"status": 502, "type": "unfilterable_list"}
    assert not response.has_header("Content-Encoding")
    assert response.get("Content-Length") in (None, str(len(body)))
    assert exchange.error_code == "unfilterable_list"
    if streamed:
        assert upstream.closed  # the server's close of the response still reaches the upstream


# --- Grants.covers_everything ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grants", "kind", "service", "covered"),
    [
        (["*"], "tool", "demo", True),
        (["tool:*"], "tool", "demo", True),
        (["tool:*:*"], "tool", "demo", True),
        (["tool:demo:*"], "tool", "demo", True),
        (["tool:d*:*"], "tool", "demo", True),
        (["*:*"], "prompt", "demo", True),
        (["resource:demo:*"], "resource", "demo", True),
        (["tool:demo:*"], "tool", "other", False),
        (["tool:*"], "prompt", "demo", False),
        (["tool:demo:add", "tool:demo:echo"], "tool", "demo", False),
        (["tool:demo:a*"], "tool", "demo", False),
        (["tool:demo"], "tool", "demo", False),
        (["route:*"], "tool", "demo", False),
        ([], "tool", "demo", False),
    ],
)
def test_covers_everything_only_when_one_grant_matches_every_item(
    grants: list[str], kind: str, service: str, covered: bool
) -> None:
    held = Grants.of(grants)
    assert held.covers_everything(kind, service) is covered
    if covered:  # whatever the item, the grants allow it
        assert all(held.allows(f"{kind}:{service}:{item}") for item in ("add", "", "a:b", "demo://x/y"))


# --- through the pipeline: real keys, the real demo server ----------------------------------------


@pytest.fixture(autouse=True)
def no_default_ip_limit() -> Iterator[None]:
    with override_settings(GATEWAY_DEFAULT_IP_RATE_LIMIT="0"):
        yield


@pytest.fixture
def demo_route(make_route: Any, demo_server_port: int) -> Any:
    """/mcp/guarded to the demo MCP server, credential required, tool permissions checked."""
    return make_route(
        "/mcp/guarded",
        f"http://127.0.0.1:{demo_server_port}/mcp",
        name="guarded",
        kind="mcp",
        allow_anonymous=False,
        tool_permissions=True,
    )


def key_with(*permissions: str) -> str:
    _, key = issue_api_key(name=f"key {' '.join(permissions)}", permissions=list(permissions))
    return key


def post(client: Any, message: Any, key: str, headers: dict[str, str]) -> Any:
    return client.post(
        "/mcp/guarded",
        json.dumps(message),
        content_type="application/json",
        headers={"Accept": STREAMABLE_ACCEPT, "Authorization": f"Bearer {key}", **headers},
    )


def answer_messages(response: Any) -> list[Any]:
    if response.streaming:
        return messages_in(b"".join(chunks_of(response)))
    return [json.loads(response.content)]


def modern_list(client: Any, key: str, method: str) -> Any:
    response = post(client, modern_message(1, method), key, modern_headers(method))
    assert response.status_code == 200
    [message] = answer_messages(response)
    return message


def test_filtering_runs_in_the_pipeline_after_schemas_are_learned() -> None:
    stages = pipeline.RESPONSE_STAGES
    assert stages.index(filter_listed_items) == stages.index(tool_schemas.learn_from_answer) + 1


def test_two_keys_see_two_different_tool_lists_through_the_pipeline(client: Any, demo_route: Any) -> None:
    narrow, wide = key_with("tool:guarded:add"), key_with("tool:guarded:*")

    narrow_tools = {tool["name"] for tool in modern_list(client, narrow, "tools/list")["result"]["tools"]}
    wide_tools = {tool["name"] for tool in modern_list(client, wide, "tools/list")["result"]["tools"]}

    assert narrow_tools == {"add"}
    assert wide_tools == ALL_DEMO_TOOLS
    # Schemas were learned from the whole list, not from what the narrow key was shown.
    assert tool_schemas.tool_schemas.schema_for(demo_route.id, "echo") is not None


def test_prompts_and_resources_are_filtered_through_the_pipeline(client: Any, demo_route: Any) -> None:
    reader = key_with("resource:guarded:demo://readme", "tool:guarded:add")

    prompts = modern_list(client, reader, "prompts/list")["result"]
    resources = modern_list(client, reader, "resources/list")["result"]

    assert prompts["prompts"] == [] and prompts["_meta"]  # the rest of the answer stays
    assert [resource["uri"] for resource in resources["resources"]] == ["demo://readme"]


def test_a_legacy_session_sse_tools_list_is_filtered_through_the_pipeline(client: Any, demo_route: Any) -> None:
    key = key_with("tool:guarded:echo", "tool:guarded:fail")
    legacy = {"MCP-Protocol-Version": LEGACY_VERSION}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
    }
    opened = post(client, initialize, key, {})
    b"".join(chunks_of(opened))
    session = {**legacy, "Mcp-Session-Id": opened["Mcp-Session-Id"]}
    assert post(client, {"jsonrpc": "2.0", "method": "notifications/initialized"}, key, session).status_code == 202

    listing = post(client, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, key, session)

    assert listing["Content-Type"].startswith("text/event-stream")
    [answer] = answer_messages(listing)
    assert answer["id"] == 2
    assert {tool["name"] for tool in answer["result"]["tools"]} == {"echo", "fail"}


def test_a_tool_that_is_not_listed_cannot_be_called_either(client: Any, demo_route: Any) -> None:
    key = key_with("tool:guarded:add")
    call = modern_message(3, "tools/call", {"name": "echo", "arguments": {"text": "hi"}})

    refused = post(client, call, key, modern_headers("tools/call", name="echo"))

    assert refused.status_code == 403
    assert json.loads(refused.content)["error"]["code"] == JSONRPC_FORBIDDEN
