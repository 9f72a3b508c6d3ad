"""``tools/call`` arguments checked against the tool's ``inputSchema`` before the call leaves.

Schemas are learned from the upstream's own ``tools/list`` answers (the response path calls
``tool_schemas.learn_from_tools_list``), kept per route and per process, and compiled into a
``jsonschema`` validator once per schema: a refresh that brings the same schema keeps the
compiled validator. A tool the gateway has not seen listed is forwarded unchecked (the upstream
still validates); a schema that is itself invalid is logged and not enforced. ``$ref`` to remote
documents is never fetched (jsonschema's registry has no retriever), so no schema makes the
gateway call out.

Example::

    tool_schemas.learn_from_tools_list(route.id, {"tools": [{"name": "add", "inputSchema": {...}}]})
    tool_schemas.schema_for(route.id, "add")  # -> the inputSchema
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from django.http import HttpResponse, StreamingHttpResponse
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from gateway_project.exchange import Exchange
from security.sanitization import safe_excerpt
from security.validation import InvalidParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolSchema:
    schema: dict[str, Any]
    validator: Validator | None  # None: the upstream's schema is invalid and is not enforced


def compile_schema(schema: dict[str, Any]) -> Validator | None:
    """A validator for ``schema`` (JSON Schema 2020-12 unless ``$schema`` says otherwise)."""
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        logger.warning("tool inputSchema is not a valid JSON Schema, not enforced: %s", safe_excerpt(exc.message, 120))
        return None
    return cls(schema)


class ToolSchemaCache:
    """Per route id, each listed tool's ``inputSchema`` and its compiled validator (in-process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[int, dict[str, ToolSchema]] = {}

    def learn_from_tools_list(self, route_id: int, result_json: Mapping[str, Any], *, replaces_all: bool = True) -> int:
        """Learn from a ``tools/list`` answer: the whole JSON-RPC response or its ``result``.

        ``replaces_all``: the answer is a first page (the request had no ``cursor``), so tools
        no longer listed are forgotten; later pages only add. Returns the number of tools learned.
        """
        result = result_json.get("result", result_json)
        tools = result.get("tools") if isinstance(result, Mapping) else None
        if not isinstance(tools, list):
            return 0
        with self._lock:
            known = self._routes.get(route_id, {})
        learned: dict[str, ToolSchema] = {} if replaces_all else dict(known)
        for tool in tools:
            if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
                continue
            schema = tool.get("inputSchema")
            if not isinstance(schema, dict):
                continue
            previous = known.get(tool["name"])
            same = previous is not None and previous.schema == schema
            learned[tool["name"]] = previous if same and previous else ToolSchema(schema, compile_schema(schema))
        with self._lock:
            self._routes[route_id] = learned
        return len(tools)

    def schema_for(self, route_id: int, tool_name: str) -> dict[str, Any] | None:
        entry = self._routes.get(route_id, {}).get(tool_name)
        return entry.schema if entry else None

    def validator_for(self, route_id: int, tool_name: str) -> Validator | None:
        entry = self._routes.get(route_id, {}).get(tool_name)
        return entry.validator if entry else None

    def forget_route(self, route_id: int) -> None:
        """On ``notifications/tools/list_changed`` or a route's service changing."""
        with self._lock:
            self._routes.pop(route_id, None)

    def clear(self) -> None:
        with self._lock:
            self._routes.clear()


tool_schemas = ToolSchemaCache()


def tools_list_result_from_sse(text: str) -> dict[str, Any] | None:
    """The JSON-RPC response carried by an SSE answer's ``data:`` lines (the first with a result)."""
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:"))
        if not data:
            continue
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            continue
        if isinstance(message, dict) and "result" in message:
            return message
    return None


def describe_failure(error: ValidationError) -> str:
    """Name the failing argument without echoing its value."""
    path = ".".join(str(part) for part in error.absolute_path)
    where = f"argument {safe_excerpt(path, 80)!r}" if path else "arguments"
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in instance), "?")
        prefix = f"{path}." if path else ""
        return f"missing required argument {safe_excerpt(prefix + str(missing), 80)!r}"
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = next((name for name in instance if name not in allowed), "?")
        return f"unexpected argument {safe_excerpt(str(extra), 80)!r}"
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{where} must be of type {safe_excerpt(' or '.join(map(str, expected)), 60)}"
    constraint = safe_excerpt(json.dumps(error.validator_value, default=str), 60)
    return f"{where} fails the {safe_excerpt(str(error.validator))!r} constraint ({constraint})"


def validate_tool_arguments(exchange: Exchange) -> HttpResponse | None:
    """Refuse a ``tools/call`` whose arguments do not satisfy the tool's learned inputSchema."""
    rpc = exchange.rpc
    route = exchange.route
    if route is None or rpc is None or not exchange.is_mcp or rpc.is_batch or rpc.method != "tools/call":
        return None
    validator = tool_schemas.validator_for(route.id, rpc.name)
    if validator is None:
        return None
    params = rpc.payload.get("params") if isinstance(rpc.payload, dict) else None
    arguments = params.get("arguments", {}) if isinstance(params, dict) else {}
    try:
        error = best_match(validator.iter_errors(arguments))
    except Unresolvable as exc:  # a $ref the schema cannot resolve: the upstream's fault, not the caller's
        logger.warning("inputSchema of tool %s has an unresolvable $ref: %s", safe_excerpt(rpc.name), safe_excerpt(str(exc), 80))
        return None
    if error is not None:
        raise InvalidParams(f"Invalid arguments for tool {safe_excerpt(rpc.name, 80)!r}: {describe_failure(error)}")
    return None


# Learning from answers: a response stage. tools/list answers come as JSON or as an SSE stream;
# a stream is tapped as it passes (never held back) and read once it has ended.
MAX_TAPPED_BYTES = 1024 * 1024


class _TappedStream:
    """Passes chunks through unchanged, keeping a bounded copy for ``on_end``."""

    def __init__(self, chunks: Iterator[bytes], on_end: Callable[[bytes], None]) -> None:
        self._chunks = chunks
        self._on_end = on_end
        self._copy = bytearray()
        self._ended = False

    def __iter__(self) -> _TappedStream:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._end()
            raise
        if len(self._copy) + len(chunk) <= MAX_TAPPED_BYTES:
            self._copy += chunk
        return chunk

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_end(bytes(self._copy))

    def close(self) -> None:
        close_chunks = getattr(self._chunks, "close", None)
        if close_chunks is not None:
            close_chunks()


def learn_from_answer(exchange: Exchange, response: HttpResponse | StreamingHttpResponse) -> None:
    """After a successful ``tools/list`` on an MCP route, remember its tools' input schemas."""
    rpc = exchange.rpc
    if not (exchange.is_mcp and rpc is not None and rpc.method == "tools/list" and 200 <= response.status_code < 300):
        return
    assert exchange.route is not None
    route_id = exchange.route.id
    params = rpc.payload.get("params") if isinstance(rpc.payload, dict) else None
    replaces_all = not (isinstance(params, dict) and params.get("cursor"))

    def learn(message: Any) -> None:
        if isinstance(message, dict) and isinstance(message.get("result"), dict):
            tool_schemas.learn_from_tools_list(route_id, message["result"], replaces_all=replaces_all)

    if isinstance(response, StreamingHttpResponse):
        chunks = cast(Iterator[bytes], response.streaming_content)
        response.streaming_content = _TappedStream(
            chunks, lambda body: learn(tools_list_result_from_sse(body.decode("utf-8", "replace")))
        )
        return
    try:
        learn(json.loads(response.content))
    except (ValueError, RecursionError):
        return
