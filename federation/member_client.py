"""The gateway as an MCP client of a member: a small synchronous Streamable HTTP client.

It speaks the 2025 session era (``initialize``, ``notifications/initialized``, then every
request with the member's ``Mcp-Session-Id``), which 2025 servers and the 2.x SDK servers both
serve. Requests go through the gateway's shared upstream pools (``performance.pools``), one
connection per request, given back with ``release``/``discard`` like forwarding does.

A member answers a request with JSON or with an event stream; ``answer_of`` reads either to
the response, passing notifications (progress, log messages) on as they arrive. A 404 to a request that carried a session id
means the member does not know the session (it restarted, or expired it): the request never
reached a handler, so it is safe to open a new session and send it again (``SessionExpired``).

    >>> session = initialize(service, target)
    >>> answer = request(service, session, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    >>> [tool["name"] for tool in answer["result"]["tools"]]
    ['echo', 'add']
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, EmptyPoolError, HTTPError, NewConnectionError, TimeoutError

from federation.errors import MemberFailed, MemberTimeout, MemberUnavailable
from performance.pools import discard, pool_exhausted, release, upstream_pool
from routing.forwarding import data_arrives_within
from routing.snapshot import ServiceConfig, TargetConfig

HANDSHAKE_VERSION = "2025-11-25"
SESSION_HEADER = "Mcp-Session-Id"
PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
STREAMABLE_ACCEPT = "application/json, text/event-stream"
EVENT_STREAM = "text/event-stream"
GATEWAY_CLIENT_INFO = {"name": "mcp-gateway", "version": "1.0"}

MAX_ANSWER_BYTES = 8 * 1024 * 1024  # the most of one answer read whole
READ_CHUNK_BYTES = 64 * 1024
EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
LINE_END = re.compile(rb"\r\n|\n|\r")

# Ids of the gateway's own requests (initialize, lists); never seen by a client.
_request_ids = itertools.count(1)

OnNotification = Callable[[dict[str, Any]], None]


class SessionExpired(Exception):
    """The member answered 404 to a session id: it does not know the session, and the request
    reached no handler."""


class NoEventStream(Exception):
    """The member answers the session's GET with something else than an event stream (405)."""


@dataclass(frozen=True, slots=True)
class MemberSession:
    """One session the gateway holds with one target of a member."""

    target: TargetConfig
    session_id: str | None  # None: the member keeps no session (a stateless server)
    protocol_version: str
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    server_info: Mapping[str, Any] = field(default_factory=dict)
    instructions: str = ""


def next_request_id() -> str:
    return f"gw-{next(_request_ids)}"


# --- sending ---------------------------------------------------------------------------------


def _headers(target: TargetConfig, session: MemberSession | None, *, accept: str = STREAMABLE_ACCEPT) -> dict[str, str]:
    headers = {"Accept": accept, "Content-Type": "application/json"}
    if session is not None:
        headers[PROTOCOL_VERSION_HEADER] = session.protocol_version
        if session.session_id:
            headers[SESSION_HEADER] = session.session_id
    if target.auth_header:  # the member's own credential; the client's never leaves the gateway
        headers[target.auth_header] = target.auth_value
    return headers


def open_exchange(
    service: ServiceConfig,
    target: TargetConfig,
    method: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    read_timeout: float | None = None,
) -> urllib3.BaseHTTPResponse:
    """Send one HTTP request to a member target; return once status and headers have arrived.

    Raises ``MemberUnavailable`` when nothing could be sent, ``MemberTimeout`` and
    ``MemberFailed`` when it may have been.
    """
    pool = upstream_pool(target.scheme, target.host, target.port)
    try:
        return pool.urlopen(
            method,
            target.base_path or "/",
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=True,
            timeout=urllib3.Timeout(connect=service.connect_timeout, read=read_timeout or service.request_timeout),
        )
    except NewConnectionError as exc:  # a subclass of the timeouts, so checked first
        raise MemberUnavailable(f"Cannot connect to {service.name}") from exc
    except ConnectTimeoutError as exc:
        raise MemberUnavailable(f"Connecting to {service.name} timed out") from exc
    except TimeoutError as exc:
        raise MemberTimeout(f"{service.name} did not answer in time") from exc
    except EmptyPoolError as exc:
        raise pool_exhausted(service.name) from exc
    except HTTPError as exc:
        raise MemberFailed(f"{service.name} failed: {type(exc).__name__}") from exc


def post_message(
    service: ServiceConfig, session: MemberSession | None, message: Mapping[str, Any], target: TargetConfig | None = None
) -> urllib3.BaseHTTPResponse:
    """POST one JSON-RPC message in ``session`` (or, for initialize, to ``target``)."""
    chosen = target or (session.target if session is not None else None)
    assert chosen is not None
    body = json.dumps(message, separators=(",", ":")).encode()
    return open_exchange(service, chosen, "POST", headers=_headers(chosen, session), body=body)


# --- reading answers -------------------------------------------------------------------------


class EventParser:
    """Server-sent events, fed in chunks as they arrive; each complete event's ``data``."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._pending += chunk
        events: list[str] = []
        while (end := EVENT_END.search(self._pending)) is not None:
            event, self._pending = self._pending[: end.start()], self._pending[end.end() :]
            data = [line[5:].removeprefix(b" ") for line in LINE_END.split(event) if line.startswith(b"data:")]
            if data:
                events.append(b"\n".join(data).decode("utf-8", "replace"))
        return events


def is_event_stream(response: urllib3.BaseHTTPResponse) -> bool:
    return response.headers.get("Content-Type", "").lower().startswith(EVENT_STREAM)


def parse_message(text: str | bytes) -> dict[str, Any] | None:
    """One JSON-RPC message, or None for anything else (a bad event is skipped, not fatal)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def _chunks(response: urllib3.BaseHTTPResponse, service: ServiceConfig, deadline: float) -> Iterator[bytes]:
    total = 0
    try:
        while chunk := response.read1(READ_CHUNK_BYTES):
            total += len(chunk)
            if total > MAX_ANSWER_BYTES:
                raise MemberFailed(f"{service.name} sent an answer larger than {MAX_ANSWER_BYTES} bytes")
            yield chunk
            if time.monotonic() > deadline:
                raise MemberTimeout(f"{service.name} did not finish its answer in time")
    except TimeoutError as exc:
        raise MemberTimeout(f"{service.name} stopped answering") from exc
    except (HTTPError, OSError) as exc:
        raise MemberFailed(f"{service.name} closed the connection mid-answer") from exc


def answer_of(
    response: urllib3.BaseHTTPResponse,
    service: ServiceConfig,
    session: MemberSession | None,
    request_id: Any,
    on_notification: OnNotification | None = None,
) -> dict[str, Any]:
    """Read the response to ``request_id`` (a JSON body, or the event of an event stream that
    carries it), passing notifications on as they arrive.

    The connection goes back to the pool when the answer was read to its end; an event stream
    still open after the response is closed instead.
    """
    deadline = time.monotonic() + service.response_timeout
    complete = False
    try:
        if not is_event_stream(response):
            message = parse_message(b"".join(_chunks(response, service, deadline)))
            complete = True
            if message is None or ("result" not in message and "error" not in message):
                raise MemberFailed(f"{service.name} answered HTTP {response.status} without a JSON-RPC response")
            return message
        parser = EventParser()
        for chunk in _chunks(response, service, deadline):
            for data in parser.feed(chunk):
                message = parse_message(data)
                if message is None:
                    continue
                if is_response_to(message, request_id):
                    complete = finish_reading(response)
                    return message
                if session is not None and is_server_request(message):
                    decline_server_request(service, session, message)
                elif "method" in message and on_notification is not None:
                    on_notification(message)
        complete = True
        raise MemberFailed(f"{service.name} ended its answer without a response (HTTP {response.status})")
    finally:
        release(response, complete=complete)


def finish_reading(response: urllib3.BaseHTTPResponse, wait_seconds: float = 0.05) -> bool:
    """After the response event, the member ends the stream at once: read that end, briefly, so
    the connection can be reused. True when the answer was read to its end."""
    try:
        for _ in range(3):
            if not data_arrives_within(response, wait_seconds):
                return False
            if not response.read1(READ_CHUNK_BYTES):
                return True
    except (HTTPError, OSError):
        return False
    return False


def is_response_to(message: Mapping[str, Any], request_id: Any) -> bool:
    return "method" not in message and ("result" in message or "error" in message) and message.get("id") == request_id


def is_server_request(message: Mapping[str, Any]) -> bool:
    """A request from the member to its client (sampling, elicitation, roots)."""
    return "method" in message and "id" in message


def decline_server_request(service: ServiceConfig, session: MemberSession, message: Mapping[str, Any]) -> None:
    """A virtual server relays no requests from members to clients (sampling, elicitation,
    roots): say so at once, rather than leave the member waiting for an answer that never comes."""
    refusal = {
        "jsonrpc": "2.0",
        "id": message.get("id"),
        "error": {"code": -32601, "message": "Not supported through a virtual server"},
    }
    try:
        discard(post_message(service, session, refusal))
    except (MemberUnavailable, MemberFailed, MemberTimeout):
        pass  # the member's own timeout ends its wait


# --- sessions and requests -------------------------------------------------------------------


def request(
    service: ServiceConfig,
    session: MemberSession,
    message: Mapping[str, Any],
    on_notification: OnNotification | None = None,
) -> dict[str, Any]:
    """Send a request in ``session`` and read its response (JSON-RPC errors included).

    Raises ``SessionExpired`` on a 404 to the session, the ``Member*`` errors otherwise.
    """
    response = post_message(service, session, message)
    raise_if_session_expired(response, session)
    if response.status >= 400 and not _carries_jsonrpc(response):
        discard(response)
        raise MemberFailed(f"{service.name} answered HTTP {response.status}")
    return answer_of(response, service, session, message.get("id"), on_notification)


def raise_if_session_expired(response: urllib3.BaseHTTPResponse, session: MemberSession | None) -> None:
    if response.status == 404 and session is not None and session.session_id:
        discard(response)
        raise SessionExpired(session.session_id)


def _carries_jsonrpc(response: urllib3.BaseHTTPResponse) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    return content_type.startswith("application/json") or content_type.startswith(EVENT_STREAM)


def notify(service: ServiceConfig, session: MemberSession, message: Mapping[str, Any]) -> None:
    """Send a notification; the member answers 202 with no body."""
    response = post_message(service, session, message)
    raise_if_session_expired(response, session)
    discard(response)
    if response.status >= 400:
        raise MemberFailed(f"{service.name} refused {message.get('method')}: HTTP {response.status}")


def cancel_request(service: ServiceConfig, session: MemberSession, request_id: Any) -> None:
    """Tell the member to stop working on a request nobody waits for any more (best effort)."""
    params = {"requestId": request_id, "reason": "The client went away"}
    try:
        notify(service, session, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})
    except (MemberUnavailable, MemberFailed, MemberTimeout, SessionExpired):
        pass


def initialize(service: ServiceConfig, target: TargetConfig) -> MemberSession:
    """Open a session with one target: ``initialize``, then ``notifications/initialized``."""
    request_id = next_request_id()
    params = {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": GATEWAY_CLIENT_INFO}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}
    response = post_message(service, None, message, target=target)
    session_id = response.headers.get(SESSION_HEADER) or None
    answer = answer_of(response, service, None, request_id)
    result = answer.get("result")
    if not isinstance(result, dict):
        raise MemberFailed(f"{service.name} refused initialize: {json.dumps(answer.get('error'))[:200]}")
    session = MemberSession(
        target=target,
        session_id=session_id,
        protocol_version=str(result.get("protocolVersion") or HANDSHAKE_VERSION),
        capabilities=_mapping(result.get("capabilities")),
        server_info=_mapping(result.get("serverInfo")),
        instructions=str(result.get("instructions") or ""),
    )
    notify(service, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def end_session(service: ServiceConfig, session: MemberSession) -> None:
    """DELETE the session, best effort: the member's idle timeout ends it otherwise."""
    if not session.session_id:
        return
    try:
        discard(open_exchange(service, session.target, "DELETE", headers=_headers(session.target, session)))
    except (MemberUnavailable, MemberFailed, MemberTimeout):
        pass


# --- the member's own event stream -------------------------------------------------------------


def open_event_stream(service: ServiceConfig, session: MemberSession, read_timeout: float) -> urllib3.BaseHTTPResponse:
    """GET the session's standing event stream (list_changed and other notifications)."""
    headers = _headers(session.target, session, accept=EVENT_STREAM)
    headers.pop("Content-Type")
    response = open_exchange(service, session.target, "GET", headers=headers, read_timeout=read_timeout)
    raise_if_session_expired(response, session)
    if response.status != 200 or not is_event_stream(response):
        discard(response)
        raise NoEventStream(f"{service.name} offers no event stream (HTTP {response.status})")
    return response
