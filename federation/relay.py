"""A member's answer to a client's call, relayed: JSON for a plain result, an event stream when
notifications come first.

A member may answer with JSON or with an event stream. An event stream is read as it arrives
(forwarding's ``RelayedStream``: keep-alive comments while the member is silent, its response
timeout for silence, the connection closed when the client leaves, which cancels the call
upstream). Until something must reach the client, nothing is sent: when the response comes
first the client gets ``application/json``; when a notification (progress, a log message)
comes first, or the member stays silent past the keep-alive interval, the answer becomes an
event stream that carries each notification as it arrives and ends with the response.

A client that leaves before the answer cancels the call: the member's stream is closed and, as
a 2025 session requires, ``notifications/cancelled`` is sent for the request.

What is relayed: progress and log notifications (log messages to a 2026-era client only when
its request opted in). A member's ``list_changed`` is not the client's business as such: it
makes the gateway fetch that member's lists, and clients hear of the change on their own
streams. A member's requests to the client (sampling, elicitation) are declined.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from federation import member_client, member_lists, member_sessions
from federation.errors import MemberFailed, MemberUnavailable
from federation.eras import LOG_LEVEL_META_KEY, Era
from federation.member_client import EventParser, MemberSession
from federation.member_sessions import ClientBinding
from federation.snapshot import MemberConfig
from gateway_project.errors import JSONRPC_CONTENT_TYPE
from gateway_project.exchange import Exchange
from performance.pools import discard
from routing.forwarding import KEEPALIVE_COMMENT, RelayedStream, data_arrives_within
from routing.snapshot import ServiceConfig

logger = logging.getLogger(__name__)

EVENT_STREAM_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
RELAYED_NOTIFICATIONS = frozenset({"notifications/progress", "notifications/message"})
# Results a 2026-07-28 client expects cache hints on (SEP-2549); members in a 2025 session send none.
CACHEABLE_RESULTS = frozenset({"resources/read"})
LIST_CHANGED_SUFFIX = "/list_changed"
ENDED_WITHOUT_ANSWER = "The member ended its answer without a response"


def sse_event(message: Mapping[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


def json_response(message: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(message, separators=(",", ":")), status=status, content_type=JSONRPC_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def event_stream_response(chunks: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    for name, value in EVENT_STREAM_HEADERS.items():
        response[name] = value
    return response


def relay_call(
    exchange: Exchange,
    era: Era,
    member: MemberConfig,
    binding: ClientBinding | None,
    message: Mapping[str, Any],
    *,
    client_id: Any,
) -> HttpResponse | StreamingHttpResponse:
    """Send ``message`` (carrying an id of the gateway's own) to the member and relay its answer
    to the client under ``client_id``, the id the client's request had."""
    service = member.service
    try:
        opened = member_sessions.open_call(service, message, binding)
    except MemberUnavailable:
        member_lists.refresh_soon(service)  # files it as down: its items leave the lists now
        raise
    upstream = opened.response
    if upstream.status >= 400 and not member_client.is_event_stream(upstream):
        return _relay_error_answer(service, opened.session, upstream, message, client_id)
    if not member_client.is_event_stream(upstream):
        answer = member_client.answer_of(upstream, service, opened.session, message.get("id"))
        return json_response(for_client(era, message, answer, client_id))
    events = _events_to_client(exchange, era, service, opened.session, upstream, message, client_id)
    first = next(events)
    if first.startswith(b"{"):  # the response came before anything else: plain JSON
        events.close()
        exchange.bytes_sent = 0  # the pipeline counts the JSON body itself
        return HttpResponse(first, content_type=JSONRPC_CONTENT_TYPE)
    return event_stream_response(_prepended(first, events))


def for_client(era: Era, request: Mapping[str, Any], answer: dict[str, Any], client_id: Any) -> dict[str, Any]:
    """A member's response as the client's era has it, under the client's own id: a 2026-07-28
    result says it is complete (and, for cacheable ones, that it is stale at once and private,
    as nothing upstream said)."""
    answer = {**answer, "id": client_id}
    result = answer.get("result")
    if not era.modern or not isinstance(result, dict):
        return answer
    hints: dict[str, Any] = {"resultType": "complete"}
    if request.get("method") in CACHEABLE_RESULTS:
        hints.update(ttlMs=0, cacheScope="private")
    return {**answer, "result": {**hints, **result}}


def _relay_error_answer(
    service: ServiceConfig, session: MemberSession, upstream: Any, message: Mapping[str, Any], client_id: Any
) -> HttpResponse:
    """A member's 4xx/5xx: its JSON-RPC error passes on with its status; anything else is the
    gateway's 502."""
    if not upstream.headers.get("Content-Type", "").lower().startswith("application/json"):
        discard(upstream)
        raise MemberFailed(f"{service.name} answered HTTP {upstream.status}")
    answer = member_client.answer_of(upstream, service, session, message.get("id"))
    return json_response({**answer, "id": client_id}, status=upstream.status if upstream.status < 500 else 502)


def _prepended(first: bytes, rest: Generator[bytes, None, None]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # closing it closes the member's stream


def _events_to_client(
    exchange: Exchange,
    era: Era,
    service: ServiceConfig,
    session: MemberSession,
    upstream: Any,
    message: Mapping[str, Any],
    client_id: Any,
) -> Generator[bytes, None, None]:
    """Client-bound chunks: SSE events and keep-alive comments, then the response's event.

    The very first chunk is the response's bare JSON when it arrives before anything else (the
    caller answers with JSON then); after the first notification or keep-alive, everything is
    an event stream.
    """
    source = RelayedStream(exchange, upstream, service.response_timeout, keepalive=True)
    parser = EventParser()
    request_id = message.get("id")
    streaming = answered = False
    try:
        for chunk in source:
            if chunk == KEEPALIVE_COMMENT:
                streaming = True
                yield chunk
                continue
            for data in parser.feed(chunk):
                received = member_client.parse_message(data)
                if received is None:
                    continue
                if member_client.is_response_to(received, request_id):
                    _finish(source, upstream)
                    answered = True
                    answer = for_client(era, message, received, client_id)
                    yield sse_event(answer) if streaming else json.dumps(answer, separators=(",", ":")).encode()
                    return
                relayed = _relayed_notification(era, service, session, received)
                if relayed is not None:
                    streaming = True
                    yield relayed
        if not streaming:
            raise MemberFailed(ENDED_WITHOUT_ANSWER)
        # Too late for an error status: the stream ends with a JSON-RPC error event instead.
        exchange.error_code = MemberFailed.code
        yield sse_event({"jsonrpc": "2.0", "id": client_id, "error": {"code": -32000, "message": ENDED_WITHOUT_ANSWER}})
    except GeneratorExit:
        if not answered:  # the client left: in a 2025 session, closing the stream does not cancel
            member_client.cancel_request(service, session, request_id)
        raise
    finally:
        source.close()


def _finish(source: RelayedStream, upstream: Any) -> None:
    """Read the member's end of stream right after the response, so the connection is reused."""
    for _ in range(3):
        if not data_arrives_within(upstream, 0.05) or next(source, None) is None:
            return


def _relayed_notification(era: Era, service: ServiceConfig, session: MemberSession, received: dict[str, Any]) -> bytes | None:
    """What of a member's message reaches the client (an SSE event), and what it sets off."""
    method = received.get("method")
    if not isinstance(method, str):
        return None
    if member_client.is_server_request(received):
        member_client.decline_server_request(service, session, received)
        return None
    if method.endswith(LIST_CHANGED_SUFFIX):
        member_lists.refresh_soon(service)
        return None
    if method not in RELAYED_NOTIFICATIONS:
        return None
    if method == "notifications/message" and era.modern and LOG_LEVEL_META_KEY not in era.meta:
        return None  # a 2026 client gets log messages only when it asked for them
    return sse_event(received)
