"""The gateway's sessions with its members: opened lazily, reused, renewed when they expire.

- **Shared** (the default): one session per member target *per gateway process*, opened on the
  first request that needs it and reused by every request and every client after it (a
  Streamable HTTP session serves concurrent requests). Across processes each holds its own: a
  member sees one session per gateway process, never one per call.
- **Per client session** (``Member.session_scope = client``, for members that keep state per
  client): a session of its own for each client session of the gateway, opened on first use.
  Its id is kept in the state store under the client session with the same sliding timeout,
  so whichever gateway process serves the client's next request continues the same member
  session; the client's DELETE ends it. Clients of the stateless 2026 era have no session, so
  they use the shared one.

A member that forgets a session (it restarted, or expired it) answers 404: the request reached
no handler, so the session is opened again and the request sent once more, whatever it is.
Any other failure after sending is retried once only for requests without side effects: a
``tools/call`` that may have reached the tool is never sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from federation import member_client
from federation.conf import federation_settings
from federation.errors import MemberFailed, MemberUnavailable
from federation.member_client import MemberSession, SessionExpired
from federation.snapshot import MemberConfig, VirtualServerConfig
from gateway_project.errors import NoTargetAvailable
from gateway_project.state import StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.balancing import choose_target
from routing.snapshot import ServiceConfig, TargetConfig

logger = logging.getLogger(__name__)

# Methods without side effects: sent again once after a failure that is not a 404.
SIDE_EFFECT_FREE = frozenset(
    {"tools/list", "prompts/list", "prompts/get", "resources/list", "resources/templates/list", "resources/read", "ping"}
)


class SharedSessions:
    """This process's shared sessions, one per member target."""

    def __init__(self) -> None:
        self._sessions: dict[int, MemberSession] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, target_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(target_id, threading.Lock())

    def get(self, service: ServiceConfig, target: TargetConfig) -> MemberSession:
        session = self._sessions.get(target.id)
        if session is not None:
            return session
        with self._lock_for(target.id):  # one initialize per target, however many callers wait
            session = self._sessions.get(target.id)
            if session is None:
                session = self._sessions[target.id] = member_client.initialize(service, target)
            return session

    def renew(self, service: ServiceConfig, expired: MemberSession) -> MemberSession:
        """A new session in place of ``expired``, unless another thread renewed it already."""
        target = expired.target
        with self._lock_for(target.id):
            current = self._sessions.get(target.id)
            if current is not None and current.session_id != expired.session_id:
                return current
            logger.info("member %s forgot session %s; opening a new one", service.name, _short(expired.session_id))
            session = self._sessions[target.id] = member_client.initialize(service, target)
            return session

    def forget(self) -> None:
        """Drop every session (tests; the members' idle timeouts end them)."""
        with self._guard:
            self._sessions.clear()


shared_sessions = SharedSessions()


def _short(session_id: str | None) -> str:
    return (session_id or "-")[:8]


# --- sessions bound to a client session --------------------------------------------------------


def _binding_key(member: MemberConfig, client_session: str) -> str:
    digest = hashlib.sha256(client_session.encode("utf-8", "surrogateescape")).hexdigest()[:40]
    return f"federation:bound:{member.id}:{digest}"


def _bound_session(member: MemberConfig, client_session: str) -> MemberSession | None:
    try:
        raw = get_state_store().get(_binding_key(member, client_session))
    except StateStoreUnavailable as error:
        note_state_store_down("member session bindings", error)
        return None
    if raw is None:
        return None
    saved = json.loads(raw)
    target = next((t for t in member.service.targets if t.id == saved["target"]), None)
    if target is None:
        return None  # its target is gone: a new session on another one
    return MemberSession(target=target, session_id=saved["session"], protocol_version=saved["version"])


def _bind(member: MemberConfig, client_session: str, session: MemberSession) -> None:
    value = json.dumps({"target": session.target.id, "session": session.session_id, "version": session.protocol_version})
    try:
        get_state_store().set(_binding_key(member, client_session), value, ttl=federation_settings.session_ttl_seconds)
    except StateStoreUnavailable as error:
        note_state_store_down("member session bindings", error)


def end_bound_sessions(config: VirtualServerConfig, client_session: str) -> None:
    """The client ended its session: end the member sessions opened for it."""
    for member in config.members:
        if not member.per_client_sessions:
            continue
        session = _bound_session(member, client_session)
        if session is None:
            continue
        member_client.end_session(member.service, session)
        try:
            get_state_store().delete(_binding_key(member, client_session))
        except StateStoreUnavailable as error:  # the binding's own timeout ends it
            note_state_store_down("member session bindings", error)


# --- one call --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientBinding:
    """A member that keeps a session per client, and the client session asking."""

    member: MemberConfig
    client_session: str


def binding_for(member: MemberConfig, client_session: str | None) -> ClientBinding | None:
    """The binding a request needs: only a per-client member asked within a client session."""
    if client_session is None or not member.per_client_sessions:
        return None
    return ClientBinding(member, client_session)


@dataclass(frozen=True, slots=True)
class OpenedCall:
    """A request sent to a member, its status and headers arrived; the body is the caller's."""

    session: MemberSession
    response: urllib3.BaseHTTPResponse


def _target_for(service: ServiceConfig) -> TargetConfig:
    try:
        return choose_target(service)
    except NoTargetAvailable as exc:
        raise MemberUnavailable(f"{service.name} has no available target") from exc


def session_for(service: ServiceConfig, binding: ClientBinding | None) -> MemberSession:
    """The session a request uses with this member (opened if need be)."""
    if binding is None:
        return shared_sessions.get(service, _target_for(service))
    bound = _bound_session(binding.member, binding.client_session)
    if bound is not None:
        return bound
    session = member_client.initialize(service, _target_for(service))
    _bind(binding.member, binding.client_session, session)
    return session


def _renewed(service: ServiceConfig, binding: ClientBinding | None, expired: MemberSession) -> MemberSession:
    if binding is None:
        return shared_sessions.renew(service, expired)
    session = member_client.initialize(service, expired.target)
    _bind(binding.member, binding.client_session, session)
    return session


def open_call(service: ServiceConfig, message: Mapping[str, Any], binding: ClientBinding | None = None) -> OpenedCall:
    """Send ``message`` to the member in the right session; renew an expired session and send
    again (nothing ran), and retry once after other failures when the method is side-effect free."""
    may_repeat = message.get("method") in SIDE_EFFECT_FREE
    session = session_for(service, binding)
    for attempt in (1, 2):
        try:
            response = member_client.post_message(service, session, message)
            member_client.raise_if_session_expired(response, session)
            return OpenedCall(session, response)
        except SessionExpired:
            if attempt == 2:
                raise MemberFailed(f"{service.name} does not accept its new session") from None
            session = _renewed(service, binding, session)
        except MemberFailed:
            if attempt == 2 or not may_repeat:
                raise
            logger.info("retrying %s on %s once", message.get("method"), service.name)
    raise AssertionError("unreachable")  # pragma: no cover


def request(service: ServiceConfig, message: Mapping[str, Any]) -> dict[str, Any]:
    """A request of the gateway's own (lists) in the shared session, answered whole."""
    opened = open_call(service, message)
    return member_client.answer_of(opened.response, service, opened.session, message.get("id"))
