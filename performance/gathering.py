"""Reading an answer whole, for the features that need all of it before they can answer.

Everywhere else the gateway relays answers as they arrive. Two features cannot: a client batch
answers one JSON array holding every item's response (``performance/batching.py``), and a
fan-out route chooses between, or merges, complete answers (``performance/fanout.py``). Their
answers are read here, bounded by ``MAX_GATHERED_BYTES`` and an optional deadline, and the
JSON-RPC response is taken out of them:

- a JSON body is the response itself (kept byte-exact, as the upstream wrote it);
- an event stream (MCP's Streamable HTTP may answer any request that way) carries it in one of
  its events, among notifications and server requests. Reading stops at that event: a stream
  that stays open afterwards is not waited for.

Reading always ends with ``close()``, as a server would close the response, which gives the
upstream connection back and finishes the exchange.

Example: an event stream ``event: message\\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\\n\\n`` is
gathered as ``message == {"jsonrpc": "2.0", "id": 1, "result": {}}``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from django.http import HttpResponse, StreamingHttpResponse

from gateway_project.errors import GatewayError

# The most of one answer held in memory (the list filter holds as much, for the same reason).
MAX_GATHERED_BYTES = 8 * 1024 * 1024
EVENT_STREAM = "text/event-stream"
# An SSE event ends at a blank line, whichever line ending the server uses.
EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
LINE_END = re.compile(rb"\r\n|\n|\r")
DATA_FIELD = b"data:"


class AnswerTooLarge(GatewayError):
    """Raised when an answer that must be read whole is larger than ``MAX_GATHERED_BYTES``."""

    status = 502
    code = "answer_too_large"
    title = "The upstream's answer is too large to gather"


@dataclass(frozen=True, slots=True)
class GatheredAnswer:
    """One answer, read whole: status, headers as relayed, body, and its JSON-RPC response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    message: dict[str, Any] | None  # the JSON-RPC response it carried, if any
    message_json: bytes  # that response's JSON text as the upstream wrote it (b"" when none)

    @property
    def is_success(self) -> bool:
        """A 2xx answer that is not a JSON-RPC error."""
        return 200 <= self.status < 300 and not (self.message is not None and "error" in self.message)

    @property
    def is_event_stream(self) -> bool:
        return any(name.lower() == "content-type" and value.lower().startswith(EVENT_STREAM) for name, value in self.headers)


def gather_answer(response: HttpResponse | StreamingHttpResponse, deadline: float | None = None) -> GatheredAnswer:
    """Read ``response`` whole (an event stream up to its JSON-RPC response), then close it.

    Past ``deadline`` (``time.monotonic()``), reading stops with what has arrived: whoever set it
    has stopped waiting. Raises ``AnswerTooLarge``.
    """
    headers = tuple(response.items())
    streamed = any(name.lower() == "content-type" and value.lower().startswith(EVENT_STREAM) for name, value in headers)
    try:
        if isinstance(response, StreamingHttpResponse):
            # The gateway only builds synchronous streams (WSGI), never async iterators.
            chunks = cast(Iterator[bytes], response.streaming_content)
            body = _read_stream(chunks, stop_at_response=streamed, deadline=deadline)
        else:
            body = response.content
    finally:
        response.close()
    message_json = _response_in_events(body) if streamed else body.strip()
    message = jsonrpc_response(message_json)
    return GatheredAnswer(
        status=response.status_code,
        headers=headers,
        body=body,
        message=message,
        message_json=message_json if message is not None else b"",
    )


def jsonrpc_response(data: bytes) -> dict[str, Any] | None:
    """``data`` parsed when it is a JSON-RPC response (a result or an error), else None."""
    if not data:
        return None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # ValueError covers bad JSON and bad UTF-8 alike
        return None
    if isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message):
        return message
    return None


def _read_stream(chunks: Iterator[bytes], *, stop_at_response: bool, deadline: float | None) -> bytes:
    body = bytearray()
    unfinished_event = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_GATHERED_BYTES:
            raise AnswerTooLarge(f"The upstream's answer is larger than the {MAX_GATHERED_BYTES} bytes the gateway gathers")
        if stop_at_response:
            # An event end may begin in the last three bytes of what came before.
            scan_from = max(0, len(unfinished_event) - 3)
            unfinished_event += chunk
            if EVENT_END.search(unfinished_event, scan_from):
                *events, rest = EVENT_END.split(bytes(unfinished_event))
                unfinished_event = bytearray(rest)
                if any(jsonrpc_response(_event_data(event)) is not None for event in events):
                    break
        if deadline is not None and time.monotonic() > deadline:
            break
    return bytes(body)


def _response_in_events(stream: bytes) -> bytes:
    """The data of the first complete event that is a JSON-RPC response (b"" when none is)."""
    for event in EVENT_END.split(stream)[:-1]:  # the last part is an unfinished event (or empty)
        data = _event_data(event)
        if jsonrpc_response(data) is not None:
            return data
    return b""


def _event_data(event: bytes) -> bytes:
    """An event's ``data:`` lines joined, as an SSE client reads them."""
    lines = LINE_END.split(event)
    return b"\n".join(line[len(DATA_FIELD) :].removeprefix(b" ") for line in lines if line.startswith(DATA_FIELD))
