"""Client JSON-RPC batches: one array in, every item through the whole pipeline, one array out.

Where an array is a batch:
- on MCP paths, from clients of protocol 2025-03-26, the one MCP version with batches: requests
  saying ``MCP-Protocol-Version: 2025-03-26``, or saying no version at all (the header came with
  2025-06-18, which tells servers to assume 2025-03-26 without it). Later versions forbid
  arrays, so theirs get one -32600 error naming the version;
- on plain HTTP paths, when the array is unmistakably JSON-RPC: every item an object with
  ``"jsonrpc": "2.0"``. Any other JSON array is the API's own data and is forwarded untouched.

How it is answered: each item becomes a request of its own (the client's request, headers and
all, with the item's bytes as its body) and runs the whole pipeline
(``gateway_project.pipeline.handle``) on a worker thread. So every item is routed,
authenticated, rate-limited, validated, authorized, cached and forwarded exactly as the same
call sent alone. Items run concurrently, and their responses are gathered into one array, in
the items' order, within ``GATEWAY_BATCH_TIMEOUT_SECONDS`` (1 s):
- an item refused by the gateway (401, 403, 429, ...) answers with its own JSON-RPC error;
- an item still running at the timeout answers with an error of its own (-32000) and finishes
  unobserved; one that has not started yet is never run;
- notifications, and responses to the server's requests, run but get no entry; a batch of
  nothing else is answered 202 without a body (as MCP 2025-03-26 says).

Refused whole, with one -32600 error (id null): an empty array, an item that is not an object,
more than ``GATEWAY_BATCH_MAX_ITEMS`` (10) items.

The batch itself is never routed, authenticated or limited: only its items are, so every limit
counts calls, not envelopes. The price: a batch without the credential its items need is
answered with each item's 401 error instead of one 401 challenge. MCP clients authenticate
before ``initialize``, which may not be batched, so their batches carry a credential already.

Example: ``[{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add"}},
{"jsonrpc": "2.0", "method": "notifications/cancelled"}]`` is answered
``[{"jsonrpc": "2.0", "id": 1, "result": {...}}]``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from django.core.handlers.wsgi import WSGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse

from gateway_project.errors import JSONRPC_CONTENT_TYPE, GatewayError, JsonRpcInvalidRequest, render_error
from gateway_project.exchange import Exchange
from performance.conf import performance_settings
from performance.gathering import GatheredAnswer, gather_answer
from routing.matching import path_matches
from routing.snapshot import get_snapshot
from security.sanitization import safe_excerpt
from security.validation import is_valid_id

logger = logging.getLogger(__name__)

PROTOCOL_VERSION_META = "HTTP_MCP_PROTOCOL_VERSION"
# The one MCP version whose clients may send arrays: 2025-06-18 took batching out again.
BATCHING_MCP_VERSION = "2025-03-26"

EMPTY_BATCH = "Invalid Request: the batch is empty"
ITEM_NOT_AN_OBJECT = "Invalid Request: batch item {number} is not an object"
TOO_MANY_ITEMS = "Invalid Request: a batch holds at most {limit} items, this one holds {count}"
VERSION_FORBIDS_BATCHES = "JSON-RPC batches are not supported in MCP protocol version {version}"
INITIALIZE_IN_BATCH = "Invalid Request: initialize must not be part of a JSON-RPC batch"
ITEM_TIMED_OUT = "The batch item did not finish within the batch timeout of {seconds:g} s"
ITEM_WITHOUT_RESPONSE = "The answer to this batch item (HTTP {status}) carried no JSON-RPC response"
ITEM_FAILED = "The gateway failed to handle this batch item"

JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


class BatchNotSupported(JsonRpcInvalidRequest):
    """Raised when an MCP client of a protocol version that forbids batches sends an array."""

    code = "batch_not_supported"


class BatchTooLarge(JsonRpcInvalidRequest):
    """Raised when a batch holds more than ``GATEWAY_BATCH_MAX_ITEMS`` items."""

    code = "batch_too_large"


class BatchItemTimedOut(GatewayError):
    """Answered for a batch item still running when the batch timeout ran out."""

    status = 504
    code = "batch_item_timeout"
    title = "The batch item timed out"


class BatchItemWithoutResponse(GatewayError):
    """Answered for a batch item whose answer held no JSON-RPC response (HTML, an empty 202...)."""

    status = 502
    code = "no_jsonrpc_response"
    title = "The batch item's answer carried no JSON-RPC response"


class BatchItemFailed(GatewayError):
    """Answered for a batch item that failed in an unexpected way (logged), so one bug costs one
    item, not the batch."""

    status = 500
    code = "internal_error"
    title = ITEM_FAILED


# --- the stage ---------------------------------------------------------------------------------


def dispatch_batch(exchange: Exchange) -> HttpResponse | None:
    """Answer a JSON-RPC batch by running each item through the pipeline; anything else goes on."""
    rpc = exchange.rpc
    if rpc is None or not rpc.is_batch:
        return None
    on_mcp_path = served_by_mcp(exchange.request.path)
    if on_mcp_path is None or (not on_mcp_path and not is_jsonrpc_batch(rpc.payload)):
        return None  # no route here (find_route answers 404), or an HTTP API's own JSON array
    # The caller speaks JSON-RPC, also on a plain HTTP route; a refusal of the whole batch has
    # no single item to answer, so its id is null.
    exchange.jsonrpc_errors = True
    exchange.rpc = dataclasses.replace(rpc, id=None)
    if on_mcp_path:
        refuse_unless_batching_version(exchange.request)
    items = checked_items(rpc.payload)
    entries = run_items(exchange.request, items, split_batch(exchange.body), on_mcp_path=on_mcp_path)
    return batch_response(entries)


def served_by_mcp(path: str) -> bool | None:
    """Whether an MCP route serves ``path`` (as the error renderer decides); None when no route does."""
    routes = [route for route in get_snapshot().routes if path_matches(route, path)]
    if not routes:
        return None
    return any(route.service.speaks_mcp for route in routes)


def is_jsonrpc_batch(payload: list[Any]) -> bool:
    return bool(payload) and all(isinstance(item, dict) and item.get("jsonrpc") == "2.0" for item in payload)


def refuse_unless_batching_version(request: HttpRequest) -> None:
    version = request.META.get(PROTOCOL_VERSION_META, BATCHING_MCP_VERSION)
    if version != BATCHING_MCP_VERSION:
        raise BatchNotSupported(VERSION_FORBIDS_BATCHES.format(version=safe_excerpt(version, 40)))


def checked_items(payload: list[Any]) -> list[dict[str, Any]]:
    if not payload:
        raise JsonRpcInvalidRequest(EMPTY_BATCH)
    for number, item in enumerate(payload):
        if not isinstance(item, dict):
            raise JsonRpcInvalidRequest(ITEM_NOT_AN_OBJECT.format(number=number))
    limit = performance_settings.batch_max_items
    if len(payload) > limit:
        raise BatchTooLarge(TOO_MANY_ITEMS.format(limit=limit, count=len(payload)))
    return payload


def split_batch(body: bytes) -> list[bytes]:
    """Each item's own bytes, exactly as the client wrote them (``body`` is a parsed JSON array),
    so items are forwarded byte-exact, as single calls are."""
    text = body.decode(json.detect_encoding(body), "surrogatepass")  # as json.loads reads bytes
    decoder = json.JSONDecoder()
    position = _after_whitespace(text, text.index("[") + 1)
    items = []
    while text[position] != "]":
        _, end = decoder.raw_decode(text, position)
        items.append(text[position:end].encode("utf-8", "surrogatepass"))
        position = _after_whitespace(text, end)
        if text[position] == ",":
            position = _after_whitespace(text, position + 1)
    return items


def _after_whitespace(text: str, position: int) -> int:
    found = JSON_WHITESPACE.match(text, position)
    return found.end() if found else position


# --- running the items -------------------------------------------------------------------------


def run_items(request: HttpRequest, items: list[dict[str, Any]], bodies: list[bytes], *, on_mcp_path: bool) -> list[bytes]:
    """Run every item concurrently; the answer entries (JSON texts) of those that expect one."""
    timeout = performance_settings.batch_timeout_seconds
    deadline = time.monotonic() + timeout
    outcomes: list[Future[GatheredAnswer] | GatewayError] = []
    for item, body in zip(items, bodies):
        if on_mcp_path and item.get("method") == "initialize":
            outcomes.append(JsonRpcInvalidRequest(INITIALIZE_IN_BATCH))
        else:
            outcomes.append(_item_executor().submit(run_item, item_request(request, body), deadline))
    wait([outcome for outcome in outcomes if isinstance(outcome, Future)], timeout=max(0.0, deadline - time.monotonic()))
    return [_entry(item, outcome, timeout) for item, outcome in zip(items, outcomes) if expects_answer(item)]


def expects_answer(item: dict[str, Any]) -> bool:
    """Requests do; notifications (no id) and responses to the server's requests do not."""
    return "id" in item and "result" not in item and "error" not in item


def item_request(request: HttpRequest, body: bytes) -> WSGIRequest:
    """The client's request, headers and all, with one item as its body."""
    environ = dict(request.META)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # the item has a length of its own
    return WSGIRequest(environ)


def run_item(request: HttpRequest, deadline: float) -> GatheredAnswer:
    """One item through the whole pipeline, its answer read whole (on a worker thread)."""
    from gateway_project import pipeline  # the pipeline runs this module's stage: imported late

    try:
        return gather_answer(pipeline.handle(request, jsonrpc_errors=True), deadline)
    finally:
        # A warm item makes no query; a connection opened for a cold cache is not kept open by
        # a pool thread that may not run another item for hours.
        connections.close_all()


def _entry(item: dict[str, Any], outcome: Future[GatheredAnswer] | GatewayError, timeout: float) -> bytes:
    """The item's place in the answer array: its response, or an error object of its own."""
    if isinstance(outcome, GatewayError):
        return error_entry(outcome, item)
    if not outcome.done():
        outcome.cancel()  # not started yet: never runs; running: finishes unobserved
        return error_entry(BatchItemTimedOut(ITEM_TIMED_OUT.format(seconds=timeout)), item)
    try:
        answer = outcome.result()
    except GatewayError as error:  # the answer could not be gathered (too large)
        return error_entry(error, item)
    except Exception:
        logger.exception("a batch item failed")
        return error_entry(BatchItemFailed(), item)
    if answer.message is None:
        return error_entry(BatchItemWithoutResponse(ITEM_WITHOUT_RESPONSE.format(status=answer.status)), item)
    return answer.message_json


def error_entry(error: GatewayError, item: dict[str, Any]) -> bytes:
    request_id = item.get("id")
    return render_error(error, jsonrpc=True, request_id=request_id if is_valid_id(request_id) else None).content


def batch_response(entries: list[bytes]) -> HttpResponse:
    if not entries:  # notifications and responses only
        accepted = HttpResponse(status=202)
        del accepted["Content-Type"]  # no body, so no invented text/html type either
        return accepted
    return HttpResponse(b"[" + b",".join(entries) + b"]", content_type=JSONRPC_CONTENT_TYPE)


# --- the worker threads ------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _item_executor() -> ThreadPoolExecutor:
    """This process's threads for batch items (made on first use, sized by the setting then)."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=performance_settings.batch_workers, thread_name_prefix="gateway-batch-item"
                )
    return _executor
