"""MCP session affinity for the 2025 (legacy) protocol era.

A legacy server keeps session state in memory, so the target that answered ``initialize`` must
serve every later request carrying that ``Mcp-Session-Id``, from any gateway process. The
binding lives in the state store with the session's sliding timeout and records the principal
that opened the session: a session id is not a credential, and someone else presenting it is
told the session does not exist. When the bound target is gone or unhealthy the gateway answers
404, which the MCP spec defines as "start a new session", and the next ``initialize`` lands on
a healthy target. Modern (2026-07-28) requests carry no session and are balanced freely.
"""

from __future__ import annotations

import hashlib

from django.conf import settings

from gateway_project.errors import JSONRPC_INVALID_REQUEST, JSONRPC_SERVER_ERROR, GatewayError
from gateway_project.exchange import Exchange
from gateway_project.state import StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.snapshot import TargetConfig
from routing.target_status import unavailable_target_ids

SESSION_HEADER = "Mcp-Session-Id"
SESSION_META_KEY = "HTTP_MCP_SESSION_ID"


class SessionNotFound(GatewayError):
    """Raised when an Mcp-Session-Id is unknown, expired, someone else's, or its target is lost."""

    status = 404
    code = "session_not_found"
    title = "Session not found"
    # What the MCP SDK's own servers answer, so clients treat the gateway's 404 the same way.
    jsonrpc_code = JSONRPC_INVALID_REQUEST


class SessionStateUnavailable(GatewayError):
    """Raised when a session-bound request arrives while the state store cannot be reached."""

    status = 503
    code = "state_store_unavailable"
    title = "Session routing is temporarily unavailable"
    jsonrpc_code = JSONRPC_SERVER_ERROR


def _binding_key(route_id: int, session_id: str) -> str:
    # Hashed: session ids are client-supplied and unbounded; keys stay short and uniform.
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()[:40]
    return f"affinity:{route_id}:{digest}"


def session_id_of(exchange: Exchange) -> str | None:
    """The request's MCP session id, on MCP routes only."""
    if not exchange.is_mcp:
        return None
    return exchange.request.META.get(SESSION_META_KEY) or None


def bound_target(exchange: Exchange) -> TargetConfig | None:
    """The target owning the request's session, or None for a request without a session.

    Raises SessionNotFound (404) so the client re-initializes, and forgets a binding whose
    target can no longer serve it.
    """
    session_id = session_id_of(exchange)
    if session_id is None:
        return None
    assert exchange.route is not None
    store = get_state_store()
    key = _binding_key(exchange.route.id, session_id)
    try:
        binding = store.get(key)
    except StateStoreUnavailable:
        # Guessing a target would hand the session to a server that never saw it.
        raise SessionStateUnavailable(headers={"Retry-After": "5"}) from None
    if binding is None:
        raise SessionNotFound()
    target_id, _, principal = binding.partition("|")
    if principal != exchange.principal_id:
        raise SessionNotFound()
    target = next((t for t in exchange.route.service.targets if str(t.id) == target_id), None)
    if target is None or unavailable_target_ids([target.id]):
        store.delete(key)
        raise SessionNotFound()  # its server is gone: the client must start a new session
    try:
        store.expire(key, settings.GATEWAY_MCP_SESSION_TTL)  # sliding timeout
    except StateStoreUnavailable as error:
        note_state_store_down("session expiry", error)
    return target


def remember_session(exchange: Exchange, target: TargetConfig, response_session_id: str | None) -> None:
    """After an upstream answer: bind a session an ``initialize`` opened, forget one DELETE ended."""
    if not exchange.is_mcp or exchange.route is None:
        return
    try:
        _update_binding(exchange, target, response_session_id)
    except StateStoreUnavailable as error:
        note_state_store_down("session binding", error)


def _update_binding(exchange: Exchange, target: TargetConfig, response_session_id: str | None) -> None:
    assert exchange.route is not None
    store = get_state_store()
    if response_session_id and exchange.rpc is not None and exchange.rpc.method == "initialize":
        store.set(
            _binding_key(exchange.route.id, response_session_id),
            f"{target.id}|{exchange.principal_id}",
            ttl=settings.GATEWAY_MCP_SESSION_TTL,
        )
        return
    requested = session_id_of(exchange)
    if requested and exchange.request.method == "DELETE":
        store.delete(_binding_key(exchange.route.id, requested))
