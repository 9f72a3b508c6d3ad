"""The virtual server's own sessions with its 2025-era clients.

The gateway answers ``initialize`` itself and hands out a session id of its own (members never
see it). The session lives in the state store, so any gateway process serves its next
request, with the sliding timeout of every MCP session at the gateway (30 minutes), and is
bound to the principal that opened it, as routing's affinity does: a session id is not a
credential, and someone else presenting it is told the session does not exist (404, which
tells a client to initialize again). DELETE ends it, and the member sessions opened for it.
"""

from __future__ import annotations

import hashlib
import secrets

from federation.conf import federation_settings
from federation.errors import MissingSession
from gateway_project.exchange import Exchange
from gateway_project.state import StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.affinity import SESSION_META_KEY, SessionNotFound, SessionStateUnavailable


def _session_key(exchange: Exchange, session_id: str) -> str:
    assert exchange.route is not None
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()[:40]
    return f"federation:session:{exchange.route.id}:{digest}"


def presented_session(exchange: Exchange) -> str | None:
    return exchange.request.META.get(SESSION_META_KEY) or None


def open_session(exchange: Exchange) -> str:
    """A new session for the exchange's principal; its id goes back in ``Mcp-Session-Id``."""
    session_id = secrets.token_urlsafe(24)
    try:
        get_state_store().set(
            _session_key(exchange, session_id), exchange.principal_id, ttl=federation_settings.session_ttl_seconds
        )
    except StateStoreUnavailable:
        raise SessionStateUnavailable(headers={"Retry-After": "5"}) from None
    return session_id


def require_session(exchange: Exchange) -> str:
    """The request's live session, its timeout slid; 400 without one, 404 for an unknown one."""
    session_id = presented_session(exchange)
    if session_id is None:
        raise MissingSession()
    key = _session_key(exchange, session_id)
    store = get_state_store()
    try:
        owner = store.get(key)
    except StateStoreUnavailable:
        raise SessionStateUnavailable(headers={"Retry-After": "5"}) from None
    if owner is None or owner != exchange.principal_id:
        raise SessionNotFound()
    try:
        store.expire(key, federation_settings.session_ttl_seconds)
    except StateStoreUnavailable as error:
        note_state_store_down("session expiry", error)
    return session_id


def end_session(exchange: Exchange, session_id: str) -> None:
    try:
        get_state_store().delete(_session_key(exchange, session_id))
    except StateStoreUnavailable:
        raise SessionStateUnavailable(headers={"Retry-After": "5"}) from None
