"""Micro-batching: single JSON-RPC calls bound for one upstream target, sent as one batch.

A route opts in (``Route.upstream_batching``) when its upstream accepts JSON-RPC batches. A
JSON-RPC request on it (not a notification, not ``initialize``) waits up to
``GATEWAY_MICROBATCH_WINDOW_SECONDS`` (0.1 s) for other calls going to the same place, or until
``GATEWAY_MICROBATCH_MAX_ITEMS`` (10) have gathered; then one JSON array goes upstream, and each
caller gets the response carrying its own id. A caller pays at most the window; the upstream
saves its per-request overhead under load.

Who sends: the first call of a batch (its leader) waits for the window or a full batch, then
sends for everyone on its own thread; the others wait for their answer. There is no timer
thread. Callers choose ids on their own (every client starts at 1), so in the upstream batch
each call's id is its position, mapped back to the caller's id in its answer.

Only calls the upstream would see identically are merged: same route, target, path, query and
headers, X-Forwarded-For included. A session id, a protocol version, a tenant header, a
different client address all keep calls apart, so no call ever reaches the upstream under
another caller's headers (the batch is sent with the leader's, which are everyone's). Merging
across clients would mean inventing one X-Forwarded-For for several of them.

The upstream's answer must be a complete JSON array, read whole (at most
``MAX_BATCH_ANSWER_BYTES``). An event stream, a single object (the way an upstream refusing
batches answers: one -32600 error), anything else: every caller's call fails with a 502 that
says so, counted against the target like any failed call, and retried where that is safe. A
caller's answer then goes on exactly as a single call's: ``open_in_micro_batch`` returns a
urllib3 response over the caller's own answer bytes, which forwarding relays, the breaker and
health checks judge, and retries treat as they treat any answer.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, TimeoutError

from gateway_project.errors import UpstreamTimeout, UpstreamUnavailable
from gateway_project.exchange import Exchange
from performance.conf import performance_settings
from performance.pools import release
from routing.forwarding import HOP_BY_HOP_HEADERS, open_upstream, upstream_request_headers, upstream_url_path
from routing.snapshot import RouteConfig, TargetConfig

# The most of one upstream batch answer held in memory (ten answers of a list method fit).
MAX_BATCH_ANSWER_BYTES = 8 * 1024 * 1024
# Set anew on each caller's answer: the caller's body is re-encoded JSON of its own length.
REWRITTEN_ANSWER_HEADERS = frozenset({"content-length", "content-encoding"})

NOT_AN_ARRAY = "The upstream answered the batch with {what} (HTTP {status}) instead of a JSON array"
NO_ANSWER_FOR_CALL = "The upstream's batch answer holds no response for this call"
ANSWER_TOO_LARGE = f"The upstream's batch answer is larger than {MAX_BATCH_ANSWER_BYTES} bytes"
BATCH_TIMED_OUT = "The upstream batch this call joined did not answer in time"


class UnusableBatchAnswer(UpstreamUnavailable):
    """Raised when the upstream's answer to a batch cannot be split among its callers."""

    code = "unusable_batch_answer"
    title = "The upstream's batch answer could not be used"


def joins_micro_batch(exchange: Exchange, route: RouteConfig) -> bool:
    """An opted-in route, and a single JSON-RPC request (one that gets an answer)."""
    rpc = exchange.rpc
    if not route.upstream_batching or exchange.request.method != "POST" or rpc is None:
        return False
    if rpc.is_batch or not isinstance(rpc.payload, dict) or not rpc.method or "id" not in rpc.payload:
        return False
    return rpc.method != "initialize"  # MCP 2025-03-26: initialize is never part of a batch


def open_in_micro_batch(exchange: Exchange, route: RouteConfig, target: TargetConfig) -> urllib3.BaseHTTPResponse:
    """Send the call as part of a batch; return the upstream's answer to this call alone.

    Raises what ``open_upstream`` raises, and ``UnusableBatchAnswer``, for every caller alike.
    """
    # What would be sent alone (after every stage that may rewrite the body), as an object.
    call = PendingCall(message=json.loads(exchange.body))
    batch, leads = _batches.join(batch_key(exchange, route, target), call)
    if leads:
        batch.full.wait(performance_settings.microbatch_window_seconds)
        _batches.close(batch)
        send_batch(batch, exchange, route, target)
    # The leader's own wait is over already; the others wait for the leader's call at most.
    longest = (
        performance_settings.microbatch_window_seconds
        + route.connect_timeout
        + route.request_timeout
        + route.response_timeout
    )
    try:
        return call.answer.result(timeout=longest)
    except FutureTimeout:
        raise UpstreamTimeout(BATCH_TIMED_OUT) from None


# --- collecting calls --------------------------------------------------------------------------


@dataclass(eq=False)
class PendingCall:
    message: dict[str, Any]
    answer: Future[urllib3.BaseHTTPResponse] = field(default_factory=Future)


@dataclass(eq=False)
class OpenBatch:
    key: tuple[Any, ...]
    calls: list[PendingCall] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)


class BatchCollector:
    """The batches still open for joining, one per key, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[Any, ...], OpenBatch] = {}

    def join(self, key: tuple[Any, ...], call: PendingCall) -> tuple[OpenBatch, bool]:
        """Add ``call`` to the open batch for ``key`` (opening one: then the caller leads it)."""
        with self._lock:
            batch = self._open.get(key)
            leads = batch is None
            if batch is None:
                batch = self._open[key] = OpenBatch(key)
            batch.calls.append(call)
            if len(batch.calls) >= performance_settings.microbatch_max_items:
                del self._open[key]  # full: the next call opens a new batch
                batch.full.set()
        return batch, leads

    def close(self, batch: OpenBatch) -> None:
        """No more joining: from here on ``batch.calls`` stays as it is."""
        with self._lock:
            if self._open.get(batch.key) is batch:
                del self._open[batch.key]


_batches = BatchCollector()


def batch_key(exchange: Exchange, route: RouteConfig, target: TargetConfig) -> tuple[Any, ...]:
    """Calls with equal keys would reach the upstream identically, but for their bodies."""
    request = exchange.request
    headers = upstream_request_headers(request, target, 0)
    headers.pop("Content-Length", None)
    url = upstream_url_path(target, exchange.upstream_path, request.META.get("QUERY_STRING", ""))
    return (route.id, target.id, url, tuple(sorted(headers.items())))


# --- sending and sharing out -------------------------------------------------------------------


def send_batch(batch: OpenBatch, leader: Exchange, route: RouteConfig, target: TargetConfig) -> None:
    """One upstream request for every call of ``batch``; each call's future gets its outcome."""
    calls = batch.calls
    try:
        body = json.dumps([{**call.message, "id": position} for position, call in enumerate(calls)]).encode()
        # The leader's request carries everyone's headers (they are part of the key).
        upstream = open_upstream(dataclasses.replace(leader, body=body), route, target)
        status, headers, answers = _split_answer(upstream)
        for position, call in enumerate(calls):
            _settle(call, answers.get(position), status, headers)
    except BaseException as error:  # every caller learns the outcome, whatever it is, never hangs
        for call in calls:
            if not call.answer.done():
                call.answer.set_exception(error)
        if not isinstance(error, Exception):
            raise


def _split_answer(upstream: urllib3.BaseHTTPResponse) -> tuple[int, list[tuple[str, str]], dict[int, dict[str, Any]]]:
    """The upstream's batch answer read whole: its status, the headers every caller gets, and
    each response by its position id."""
    complete = False
    try:
        data = upstream.read(MAX_BATCH_ANSWER_BYTES + 1, decode_content=True)
        complete = upstream.read(1) == b""
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream stopped sending its batch answer") from exc
    except (HTTPError, OSError) as exc:
        raise UpstreamUnavailable("The upstream closed the connection mid-answer") from exc
    finally:
        release(upstream, complete=complete)
    if len(data) > MAX_BATCH_ANSWER_BYTES:
        raise UnusableBatchAnswer(ANSWER_TOO_LARGE)
    responses = _parsed_array(data, upstream)
    headers = [
        (name, value)
        for name, value in upstream.headers.items()
        if name.lower() not in HOP_BY_HOP_HEADERS and name.lower() not in REWRITTEN_ANSWER_HEADERS
    ]
    by_position = {
        response["id"]: response
        for response in responses
        if isinstance(response, dict) and isinstance(response.get("id"), int) and not isinstance(response["id"], bool)
    }
    return upstream.status, headers, by_position


def _parsed_array(data: bytes, upstream: urllib3.BaseHTTPResponse) -> list[Any]:
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, list):
        return parsed
    streamed = upstream.headers.get("Content-Type", "").lower().startswith("text/event-stream")
    what = "an event stream" if streamed else "a single JSON object" if isinstance(parsed, dict) else "no JSON"
    raise UnusableBatchAnswer(NOT_AN_ARRAY.format(what=what, status=upstream.status))


def _settle(call: PendingCall, response: dict[str, Any] | None, status: int, headers: list[tuple[str, str]]) -> None:
    """Give the caller its own response, under its own id, as an upstream answer of its own."""
    if response is None:
        call.answer.set_exception(UnusableBatchAnswer(NO_ANSWER_FOR_CALL))
        return
    body = json.dumps({**response, "id": call.message["id"]}).encode()
    own_headers = urllib3.HTTPHeaderDict(headers)
    own_headers["Content-Length"] = str(len(body))
    call.answer.set_result(
        urllib3.HTTPResponse(
            body=io.BytesIO(body), headers=own_headers, status=status, preload_content=False, decode_content=False
        )
    )
