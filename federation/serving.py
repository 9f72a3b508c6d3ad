"""A virtual server answering its clients: the terminal stage for routes of kind ``virtual``.

Every earlier stage of the pipeline has run (authentication, rate limits, validation,
authorization with ``tool:<virtual server>:<exposed name>``, the cache lookup); here the
gateway is the MCP server, in both protocol eras:

- 2025 era: ``initialize`` is answered by the gateway with a session of its own
  (``client_sessions.py``); later requests need it; GET opens the session's event stream,
  where list changes are announced; DELETE ends it.
- 2026-07-28 era: ``server/discover`` is answered by the gateway; every POST stands alone;
  ``subscriptions/listen`` opens an event stream; GET and DELETE answer 405.

Lists come from the catalog (``catalog.py``, ``listing.py``); ``tools/call``, ``prompts/get``
and ``resources/read`` go to the member that owns the item, under its own name, through the
gateway's member sessions (``member_sessions.py``), and its answer is relayed (``relay.py``).
Pinned arguments are set by the gateway; a client that sends one is refused (-32602) rather
than silently overridden, so a caller never believes a value it sent was used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from federation import client_sessions, eras, listing, member_client, member_lists, member_sessions
from federation.catalog import Catalog, ExposedItem, current_catalog
from federation.errors import (
    MEMBER_DOWN,
    PINNED_ARGUMENT,
    TOOL_HELD_BACK,
    UNKNOWN_PROMPT,
    UNKNOWN_RESOURCE,
    UNKNOWN_TOOL,
    MemberUnavailable,
    PinnedArgumentRefused,
    ToolHeldBack,
    UnknownItem,
    UnknownMethod,
    VirtualServerGone,
)
from federation.eras import Era, UnsupportedProtocolVersion
from federation.events import ListChangeStream, honored_filter, lists_of
from federation.models import PREFIX_SEPARATOR
from federation.relay import event_stream_response, json_response, relay_call, sse_event
from federation.snapshot import MemberConfig, VirtualServerConfig, virtual_server_for_service
from gateway_project.errors import JsonRpcInvalidRequest, MethodNotAllowed
from gateway_project.exchange import Exchange
from routing.affinity import SESSION_HEADER
from security.sanitization import safe_excerpt

GATEWAY_SERVER_VERSION = "1.0"
ALLOWED_METHODS = "GET, POST, DELETE"
BATCH_REFUSED = "Invalid Request: a virtual server takes one JSON-RPC message per request"
# 2026-07-28 cache hints (SEP-2549) on the gateway's own results: stale at once, since lists change
# with members and approvals, and private, since they are filtered per principal. So neither
# clients nor the gateway's response cache keep them (2025-era answers carry no hints).
MODERN_LIST_HINTS = {"resultType": "complete", "ttlMs": 0, "cacheScope": "private"}

Response = HttpResponse | StreamingHttpResponse


@dataclass(frozen=True, slots=True)
class Call:
    """One JSON-RPC request to a virtual server, with what serving it needs."""

    exchange: Exchange
    config: VirtualServerConfig
    message: Mapping[str, Any]
    era: Era
    client_session: str | None  # the 2025 era's session; None in the 2026 era

    @property
    def params(self) -> Mapping[str, Any]:
        params = self.message.get("params")
        return params if isinstance(params, dict) else {}

    def answer(self, result: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> HttpResponse:
        return json_response({"jsonrpc": "2.0", "id": self.message.get("id"), "result": result}, headers=headers)


def serve(exchange: Exchange) -> Response:
    """Answer one request to a virtual server (the terminal stage hands it over)."""
    assert exchange.route is not None
    config = virtual_server_for_service(exchange.route.service.id)
    if config is None:
        raise VirtualServerGone()
    method = exchange.request.method
    if method == "POST":
        return _serve_post(exchange, config)
    if method == "GET" and client_sessions.presented_session(exchange):
        return _open_session_stream(exchange, config)
    if method == "DELETE" and client_sessions.presented_session(exchange):
        return _end_session(exchange, config)
    raise MethodNotAllowed(headers={"Allow": "POST" if method in ("GET", "DELETE") else ALLOWED_METHODS})


def _serve_post(exchange: Exchange, config: VirtualServerConfig) -> Response:
    rpc = exchange.rpc
    if rpc is None or rpc.is_batch or not isinstance(rpc.payload, dict):
        raise JsonRpcInvalidRequest(BATCH_REFUSED)
    message: dict[str, Any] = rpc.payload
    try:
        era = eras.era_of(exchange, message)
    except UnsupportedProtocolVersion as refused:
        exchange.error_code = "unsupported_protocol_version"
        return _unsupported_version(message, refused)
    if "method" not in message or "id" not in message:  # notifications and clients' answers
        if not era.modern:
            client_sessions.require_session(exchange)
        return HttpResponse(status=202)
    if message["method"] == "initialize" and not era.modern:
        return _initialize(Call(exchange, config, message, era, None))
    client_session = None if era.modern else client_sessions.require_session(exchange)
    call = Call(exchange, config, message, era, client_session)
    handler = HANDLERS.get(message["method"])
    if handler is None:
        raise UnknownMethod(f"Method not found: {safe_excerpt(str(message['method']), 100)}")
    return handler(call)


def _unsupported_version(message: Mapping[str, Any], refused: UnsupportedProtocolVersion) -> HttpResponse:
    error = {
        "code": eras.JSONRPC_UNSUPPORTED_PROTOCOL_VERSION,
        "message": eras.UNSUPPORTED_VERSION,
        "data": {"supported": list(eras.MODERN_VERSIONS), "requested": refused.requested},
    }
    return json_response({"jsonrpc": "2.0", "id": message.get("id"), "error": error}, status=400)


# --- the server's own answers ----------------------------------------------------------------


def _server_info(config: VirtualServerConfig) -> dict[str, str]:
    return {"name": config.name, "version": GATEWAY_SERVER_VERSION}


def _initialize(call: Call) -> HttpResponse:
    """The 2025 handshake: the client's version when the gateway speaks it, else the latest."""
    requested = call.params.get("protocolVersion")
    version = requested if requested in eras.HANDSHAKE_VERSIONS else eras.LATEST_HANDSHAKE_VERSION
    catalog = current_catalog(call.config)
    result: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": catalog.capabilities,
        "serverInfo": _server_info(call.config),
    }
    if call.config.instructions:
        result["instructions"] = call.config.instructions
    session_id = client_sessions.open_session(call.exchange)
    return call.answer(result, headers={SESSION_HEADER: session_id})


def _discover(call: Call) -> HttpResponse:
    catalog = current_catalog(call.config)
    result: dict[str, Any] = {
        "supportedVersions": list(eras.MODERN_VERSIONS),
        "capabilities": catalog.capabilities,
        **MODERN_LIST_HINTS,
        "_meta": {eras.SERVER_INFO_META_KEY: _server_info(call.config)},
    }
    if call.config.instructions:
        result["instructions"] = call.config.instructions
    return call.answer(result)


def _ping(call: Call) -> HttpResponse:
    return call.answer({})


def _list(call: Call) -> HttpResponse:
    catalog = current_catalog(call.config)
    result = listing.list_result(call.exchange, call.config.name, call.message["method"], catalog, call.params)
    if call.era.modern:
        result.update(MODERN_LIST_HINTS)
    return call.answer(result)


def _listen(call: Call) -> Response:
    """``subscriptions/listen`` (2026-07-28): the answer is the stream of list changes."""
    if not call.era.modern:
        raise UnknownMethod("subscriptions/listen is a 2026-07-28 method")
    honored = honored_filter(call.params.get("notifications"))
    meta = {eras.SUBSCRIPTION_ID_META_KEY: call.message["id"]}
    acknowledgement = {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": honored, "_meta": meta},
    }
    stream = ListChangeStream(call.config.service_id, lists=lists_of(honored), meta=meta, first_event=sse_event(acknowledgement))
    return event_stream_response(stream)


def _open_session_stream(exchange: Exchange, config: VirtualServerConfig) -> Response:
    """The 2025 session's standing stream (GET): list changes as they happen."""
    client_sessions.require_session(exchange)
    return event_stream_response(ListChangeStream(config.service_id))


def _end_session(exchange: Exchange, config: VirtualServerConfig) -> HttpResponse:
    session_id = client_sessions.require_session(exchange)
    client_sessions.end_session(exchange, session_id)
    member_sessions.end_bound_sessions(config, session_id)
    return HttpResponse(status=204)


# --- calls that go to a member ---------------------------------------------------------------


def _owner_if_down(catalog: Catalog, config: VirtualServerConfig, name: str) -> MemberConfig | None:
    """The member a missing name would belong to (by rename, else by prefix), when it is down."""
    renamed_by = next((m for m in config.members if any(r.exposed_name == name for r in m.rules.values())), None)
    prefix = name.partition(PREFIX_SEPARATOR)[0]
    member = renamed_by or next((m for m in config.members if m.prefix == prefix), None)
    return member if member is not None and member.prefix in catalog.down else None


def _find(call: Call, name: str, kind: str, find: Callable[[Catalog], ExposedItem | None]) -> ExposedItem:
    """The item a call names. A name of a member filed as down asks that member again first
    (at most once a second): a member that restarted serves at once, one still down gets
    a refusal that says so."""
    catalog = current_catalog(call.config)
    item = find(catalog)
    down = _owner_if_down(catalog, call.config, name) if item is None else None
    if down is not None and member_lists.ask_again_if_down(down.service):
        catalog = current_catalog(call.config)
        item = find(catalog)
        down = _owner_if_down(catalog, call.config, name) if item is None else None
    if item is not None:
        return item
    shown = safe_excerpt(name, 100)
    if kind == "tool" and catalog.held_back(name) is not None:
        raise ToolHeldBack(TOOL_HELD_BACK.format(name=shown))
    if down is not None:
        raise MemberUnavailable(MEMBER_DOWN.format(name=shown, member=down.prefix, reason=catalog.down[down.prefix]))
    raise UnknownItem((UNKNOWN_TOOL if kind == "tool" else UNKNOWN_PROMPT).format(name=shown))


def _call_tool(call: Call) -> Response:
    name = str(call.params.get("name", ""))
    tool = _find(call, name, "tool", lambda catalog: catalog.tools_by_name.get(name))
    arguments = call.params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise UnknownItem("Invalid params: arguments must be an object")
    for argument in tool.pinned_arguments:
        if argument in arguments:
            raise PinnedArgumentRefused(PINNED_ARGUMENT.format(argument=safe_excerpt(argument, 100), name=tool.name))
    params = {**eras.without_envelope(call.params), "name": tool.upstream_name, "arguments": {**arguments, **tool.pinned_arguments}}
    return _relay(call, tool, params)


def _get_prompt(call: Call) -> Response:
    name = str(call.params.get("name", ""))
    prompt = _find(call, name, "prompt", lambda catalog: catalog.prompts_by_name.get(name))
    return _relay(call, prompt, {**eras.without_envelope(call.params), "name": prompt.upstream_name})


def _read_resource(call: Call) -> Response:
    uri = str(call.params.get("uri", ""))
    resource = current_catalog(call.config).resource(uri)
    if resource is None:
        raise UnknownItem(UNKNOWN_RESOURCE.format(uri=safe_excerpt(uri, 200)))
    return _relay(call, resource, eras.without_envelope(call.params))


def _relay(call: Call, item: ExposedItem, params: Mapping[str, Any]) -> Response:
    # A member session is shared by many clients, and clients pick their ids freely: two calls
    # with the same id in one session would have their answers (and cancellations) confused. The
    # member sees an id of the gateway's own; the answer goes back under the client's.
    message = {"jsonrpc": "2.0", "id": member_client.next_request_id(), "method": call.message["method"], "params": params}
    binding = member_sessions.binding_for(item.member, call.client_session)
    return relay_call(call.exchange, call.era, item.member, binding, message, client_id=call.message["id"])


Handler = Callable[[Call], Response]

HANDLERS: dict[str, Handler] = {
    "server/discover": _discover,
    "ping": _ping,
    "tools/list": _list,
    "prompts/list": _list,
    "resources/list": _list,
    "resources/templates/list": _list,
    "tools/call": _call_tool,
    "prompts/get": _get_prompt,
    "resources/read": _read_resource,
    "subscriptions/listen": _listen,
}

