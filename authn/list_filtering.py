"""List answers filtered by permission: a principal sees only what it may use.

On an MCP route that checks tool permissions (``RouteConfig.tool_permissions``), the upstream's
answers to ``tools/list``, ``prompts/list`` and ``resources/list`` keep only the items the
principal holds a grant for (``tool:<service>:<name>``, ``prompt:<service>:<name>``,
``resource:<service>:<uri>``). Everything else in the answer (``nextCursor``, ``_meta``, ``id``,
other fields) stays as the upstream sent it. The authorize stage refuses calls of what is not
granted; this response stage keeps the caller from even seeing it.

``resources/templates/list`` is left unfiltered: a template (``file:///{path}``) is not a
resource, and which of its expansions a principal may read is decided per URI when it reads one.

An MCP upstream answers in one of two shapes:

- a complete JSON body: parsed, filtered, re-serialized, its Content-Length fixed;
- an event stream: never held as a whole. Bytes pass through as they arrive; only an event whose
  blank line has not arrived yet is held back, and only the event carrying the list response
  is rewritten. Keep-alive comments, notifications and progress pass as soon as they are whole.

A streamed answer that is not an event stream (a JSON body too large, or of unknown length, to
have been read whole by forwarding) is one document: it is gathered, bounded, then filtered.

Failing closed: an answer that cannot be read (compressed) or held (over
``MAX_LIST_ANSWER_BYTES``) is replaced by a JSON-RPC error, never relayed unfiltered. A body that
is not JSON at all is relayed unchanged (a client cannot read a list from it either), and an
item without a string name (or uri) is dropped, since no permission can be checked for it.

Fast path: when one of the principal's grants covers every item of that kind on the service
(``Grants.covers_everything``: ``*``, ``tool:*``, ``tool:<service>:*``), nothing is parsed.

Example: with the grant ``tool:demo:add`` only, ``{"result": {"tools": [{"name": "add"},
{"name": "echo"}], "nextCursor": "2"}}`` reaches the client as ``{"result": {"tools": [{"name":
"add"}], "nextCursor": "2"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from django.http import HttpResponse, StreamingHttpResponse

from authn.permissions import prompt_permission, resource_permission, tool_permission
from authn.principal import Principal
from gateway_project.errors import JSONRPC_CONTENT_TYPE, GatewayError, render_error
from gateway_project.exchange import Exchange

# The most of one list answer (a JSON document, or one event) the gateway holds to filter it.
MAX_LIST_ANSWER_BYTES = 8 * 1024 * 1024
EVENT_STREAM = "text/event-stream"
# An SSE event ends at a blank line; these are the endings forwarding's RelayedStream knows too.
EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
LINE_END = re.compile(rb"\r\n|\n|\r")
# An event without this cannot be a JSON-RPC response with a result: relayed without parsing.
RESULT_MARKER = b'"result"'
DATA_FIELD = b"data:"

COMPRESSED_ANSWER = "The upstream's list answer is compressed ({encoding}); the gateway cannot filter it by permission"
ANSWER_TOO_LARGE = f"The upstream's list answer is larger than the {MAX_LIST_ANSWER_BYTES} bytes the gateway filters"


class UnfilterableListAnswer(GatewayError):
    """Raised when a list answer cannot be read or held whole (compressed, too large), so it can
    be neither filtered nor relayed."""

    status = 502
    code = "unfilterable_list"
    title = "The upstream's list answer could not be filtered by permission"


@dataclass(frozen=True, slots=True)
class ListedKind:
    """One list method, and how its items map to permissions."""

    method: str
    items_key: str  # the result's list: "tools"
    identity_key: str  # what names one item: "name", or "uri" for resources
    kind: str  # the permission's kind, for Grants.covers_everything
    permission: Callable[[str, str], str]  # (service name, item identity) -> permission


LISTED_KINDS: dict[str, ListedKind] = {
    listed.method: listed
    for listed in (
        ListedKind("tools/list", "tools", "name", "tool", tool_permission),
        ListedKind("prompts/list", "prompts", "name", "prompt", prompt_permission),
        ListedKind("resources/list", "resources", "uri", "resource", resource_permission),
    )
}


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What to filter in one exchange's answer, and for whom.

    A single call's answer has one response, whatever its id. A batch's answer is matched to
    its calls by id (``by_id``, keyed by the id's JSON), so other responses stay untouched.
    """

    principal: Principal
    service: str
    single: ListedKind | None = None
    by_id: Mapping[str, ListedKind] = field(default_factory=dict)

    def filter_message(self, message: Any) -> Any | None:
        """``message`` without the items the principal may not see; None when nothing goes."""
        if not isinstance(message, list):
            return self._filter_response(message, self.single or self._listed_kind_by_id(message))
        filtered = [self._filter_response(response, self._listed_kind_by_id(response)) for response in message]
        if all(response is None for response in filtered):
            return None
        return [new if new is not None else old for new, old in zip(filtered, message)]

    def _listed_kind_by_id(self, response: Any) -> ListedKind | None:
        if not self.by_id or not isinstance(response, dict) or "id" not in response:
            return None
        return self.by_id.get(id_key(response["id"]))

    def _filter_response(self, response: Any, listed: ListedKind | None) -> dict[str, Any] | None:
        if listed is None or not isinstance(response, dict):
            return None
        result = response.get("result")
        if not isinstance(result, dict) or not isinstance(result.get(listed.items_key), list):
            return None  # an error, a notification, or not a list answer
        items = result[listed.items_key]
        kept = [item for item in items if self._may_see(listed, item)]
        if len(kept) == len(items):
            return None
        return {**response, "result": {**result, listed.items_key: kept}}

    def _may_see(self, listed: ListedKind, item: Any) -> bool:
        identity = item.get(listed.identity_key) if isinstance(item, dict) else None
        return isinstance(identity, str) and self.principal.may(listed.permission(self.service, identity))


def id_key(request_id: Any) -> str:
    """A JSON-RPC id as a dict key (ids are strings, numbers or null, as JSON says them)."""
    return json.dumps(request_id, sort_keys=True)


# --- the response stage -------------------------------------------------------------------------


def filter_listed_items(exchange: Exchange, response: HttpResponse | StreamingHttpResponse) -> None:
    """Keep in a successful list answer only the items the principal may use (a response stage)."""
    if not 200 <= response.status_code < 300:
        return
    list_filter = list_filter_for(exchange)
    if list_filter is None:
        return
    encoding = response.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        replace_with_refusal(exchange, response, COMPRESSED_ANSWER.format(encoding=encoding))
        return

    def refusal() -> bytes:
        exchange.error_code = UnfilterableListAnswer.code
        return refusal_body(exchange, ANSWER_TOO_LARGE)

    if isinstance(response, StreamingHttpResponse):
        # The gateway only builds synchronous streams (WSGI), never async iterators.
        chunks = cast(Iterator[bytes], response.streaming_content)
        # The length changes with the filtering, and is known only at the end.
        response.headers.pop("Content-Length", None)
        stream_class = FilteredEventStream if is_event_stream(response) else GatheredJsonAnswer
        response.streaming_content = stream_class(chunks, list_filter, refusal)
        return
    if is_event_stream(response):  # an event stream read whole: filtered the same way
        filtered = b"".join(FilteredEventStream(iter([response.content]), list_filter, refusal))
    else:
        filtered = filtered_json(response.content, list_filter) or response.content
    if filtered != response.content:
        set_body(exchange, response, filtered)


def list_filter_for(exchange: Exchange) -> ListFilter | None:
    """What this exchange's answer needs filtered, or None: not a list call on an MCP route
    with tool permissions, or the principal may see everything it would list."""
    route, rpc = exchange.route, exchange.rpc
    if route is None or rpc is None or route.service.kind != "mcp" or not route.tool_permissions:
        return None
    principal, service = exchange.principal, route.service.name

    def needs_filtering(method: Any) -> ListedKind | None:
        listed = LISTED_KINDS.get(method) if isinstance(method, str) else None
        if listed is None or principal.grants.covers_everything(listed.kind, service):
            return None
        return listed

    if not rpc.is_batch:
        single = needs_filtering(rpc.method)
        return ListFilter(principal, service, single=single) if single is not None else None
    # A batch (2025-03-26 upstreams accept them) must not be a way around the filter.
    by_id = {
        id_key(call["id"]): listed
        for call in rpc.payload
        if isinstance(call, dict) and "id" in call and (listed := needs_filtering(call.get("method"))) is not None
    }
    return ListFilter(principal, service, by_id=by_id) if by_id else None


def is_event_stream(response: HttpResponse | StreamingHttpResponse) -> bool:
    return response.get("Content-Type", "").strip().lower().startswith(EVENT_STREAM)


def filtered_json(body: bytes, list_filter: ListFilter) -> bytes | None:
    """``body`` without the items the principal may not see; None when it stays as it is (not
    JSON, not a list answer, or nothing to remove)."""
    try:
        filtered = list_filter.filter_message(json.loads(body))
        return None if filtered is None else json.dumps(filtered, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # ValueError covers bad JSON and bad UTF-8 alike
        return None


def set_body(exchange: Exchange, response: HttpResponse, body: bytes) -> None:
    response.content = body
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(body))
    exchange.bytes_sent = len(body)


def refusal_body(exchange: Exchange, detail: str) -> bytes:
    """The JSON-RPC error a list answer that cannot be filtered is replaced by."""
    return render_error(UnfilterableListAnswer(detail), jsonrpc=True, request_id=exchange.rpc_id).content


def replace_with_refusal(exchange: Exchange, response: HttpResponse | StreamingHttpResponse, detail: str) -> None:
    """Turn the upstream's answer into the gateway's 502, in place: the server still closes this
    same response object, and with it the upstream connection, as for any answer."""
    exchange.error_code = UnfilterableListAnswer.code
    body = refusal_body(exchange, detail)
    response.status_code = UnfilterableListAnswer.status
    response.headers.pop("Content-Encoding", None)
    response["Content-Type"] = JSONRPC_CONTENT_TYPE
    if isinstance(response, StreamingHttpResponse):
        response.headers.pop("Content-Length", None)
        response.streaming_content = iter([body])
    else:
        set_body(exchange, response, body)


# --- streamed answers ---------------------------------------------------------------------------


class FilteredEventStream:
    """Relays an event stream chunk by chunk, rewriting only the event that carries a list.

    One chunk comes out for every chunk that goes in (an empty one while an event is still
    incomplete), so the server's rhythm of writes, and with it its noticing of a client that
    left, stays what forwarding made it.
    """

    def __init__(self, chunks: Iterator[bytes], list_filter: ListFilter, refusal: Callable[[], bytes]) -> None:
        self._chunks = chunks
        self._filter = list_filter
        self._refusal = refusal
        self._held = bytearray()  # the start of an event whose blank line has not arrived
        self._scan_from = 0  # where in _held an event end may still begin
        self._ended = False

    def __iter__(self) -> FilteredEventStream:
        return self

    def __next__(self) -> bytes:
        if self._ended:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._ended = True
            if not self._held:
                raise
            # An event cut off by the end of the stream is filtered too: a lenient client may read it.
            return rewritten_event(bytes(self._held), self._filter)
        if not self._held and chunk.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) and RESULT_MARKER not in chunk:
            return chunk  # whole events, none a response: the common case, without a copy
        self._held += chunk
        return self._release_complete_events()

    def _release_complete_events(self) -> bytes:
        released = []
        start = 0
        while (end := EVENT_END.search(self._held, max(start, self._scan_from))) is not None:
            released.append(rewritten_event(bytes(self._held[start : end.end()]), self._filter))
            start = end.end()
            self._scan_from = start
        del self._held[:start]
        # The next chunk may complete an event end that began in the last three bytes.
        self._scan_from = max(0, len(self._held) - 3)
        if len(self._held) > MAX_LIST_ANSWER_BYTES:
            released.append(self._give_up())
        return b"".join(released)

    def _give_up(self) -> bytes:
        """An event too large to hold: it becomes the refusal, and the stream ends with it."""
        self._held.clear()
        self._ended = True
        self.close()
        return DATA_FIELD + b" " + self._refusal() + b"\n\n"

    def close(self) -> None:
        close_chunks = getattr(self._chunks, "close", None)
        if close_chunks is not None:
            close_chunks()


def rewritten_event(event: bytes, list_filter: ListFilter) -> bytes:
    """``event`` with its ``data:`` rewritten when it is a list response with items the principal
    may not see; otherwise its own bytes (comments, notifications, progress, bad JSON)."""
    if RESULT_MARKER not in event:
        return event
    end = EVENT_END.search(event)
    body, terminator = (event[: end.start()], event[end.start() :]) if end else (event, b"")
    lines = LINE_END.split(body)
    data = b"\n".join(line[len(DATA_FIELD) :].removeprefix(b" ") for line in lines if line.startswith(DATA_FIELD))
    filtered = filtered_json(data, list_filter)
    if filtered is None:
        return event
    newline = LINE_END.search(terminator or body)
    rebuilt: list[bytes] = []
    for line in lines:
        if not line.startswith(DATA_FIELD):
            rebuilt.append(line)  # id:, event:, retry: and comments keep their places
        elif filtered:
            rebuilt.append(DATA_FIELD + b" " + filtered)  # one data line: the JSON has no newline
            filtered = b""
    return (newline.group() if newline else b"\n").join(rebuilt) + terminator


class GatheredJsonAnswer:
    """A streamed JSON answer, gathered up to ``MAX_LIST_ANSWER_BYTES`` and filtered whole (a
    JSON document cannot be filtered in pieces)."""

    def __init__(self, chunks: Iterator[bytes], list_filter: ListFilter, refusal: Callable[[], bytes]) -> None:
        self._chunks = chunks
        self._filter = list_filter
        self._refusal = refusal
        self._done = False

    def __iter__(self) -> GatheredJsonAnswer:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        self._done = True
        body = bytearray()
        for chunk in self._chunks:
            body += chunk
            if len(body) > MAX_LIST_ANSWER_BYTES:
                self.close()
                return self._refusal()
        return filtered_json(bytes(body), self._filter) or bytes(body)

    def close(self) -> None:
        close_chunks = getattr(self._chunks, "close", None)
        if close_chunks is not None:
            close_chunks()
