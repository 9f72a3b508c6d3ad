"""Each member's own lists (tools, prompts, resources, resource templates), fetched and shared.

Kept per member *service* (a service in several virtual servers is asked once), in the state
store under two keys: its token, a digest of the lists (equal tokens, equal lists), which
expires after the list TTL; and the lists themselves, filed under their token. Every process
keeps the lists it parsed last, so a request reads only the tokens of its virtual server's
members (one round trip) and reads and parses lists only when a token moved.

Lists are refreshed by the worker on a schedule, when a member says ``list_changed``
(``watch.py``), on demand from the admin, and by the first request after the TTL lapsed. A
member that cannot be asked is filed as down, for a shorter time: its items leave the lists
(with a log line) instead of failing them, and come back when it answers again.

    >>> lists = current_lists([service])[service.id]
    >>> lists.up, [tool["name"] for tool in lists.items["tools"]]
    (True, ['echo', 'add'])
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from federation import member_client, member_sessions
from federation.conf import federation_settings
from federation.errors import MemberFailed, MemberTimeout, MemberUnavailable
from gateway_project.errors import GatewayError
from gateway_project.state import StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.snapshot import ServiceConfig

logger = logging.getLogger(__name__)

MAX_PAGES = 100  # a member whose cursors never end is cut off here
# A body outlives its token a little, so a reader that just read a token still finds the lists.
BODY_GRACE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ListKind:
    capability: str  # the server capability that promises the list
    method: str
    items_key: str  # the result's list, and the key in MemberLists.items


LIST_KINDS = (
    ListKind("tools", "tools/list", "tools"),
    ListKind("prompts", "prompts/list", "prompts"),
    ListKind("resources", "resources/list", "resources"),
    ListKind("resources", "resources/templates/list", "resourceTemplates"),
)


@dataclass(frozen=True, slots=True)
class MemberLists:
    """What one member serves, as last fetched; or that it could not be asked (``up`` False)."""

    service_id: int
    up: bool
    error: str = ""
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    instructions: str = ""
    items: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    token: str = ""

    def of(self, items_key: str) -> tuple[Mapping[str, Any], ...]:
        return self.items.get(items_key, ())

    def to_json(self) -> str:
        return json.dumps(
            {
                "service_id": self.service_id,
                "up": self.up,
                "error": self.error,
                "capabilities": self.capabilities,
                "instructions": self.instructions,
                "items": {key: list(items) for key, items in self.items.items()},
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> MemberLists:
        data = json.loads(raw)
        return cls(
            service_id=data["service_id"],
            up=data["up"],
            error=data["error"],
            capabilities=data["capabilities"],
            instructions=data["instructions"],
            items={key: tuple(items) for key, items in data["items"].items()},
            token=_token_of(raw),
        )


def _token_of(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _with_token(lists: MemberLists) -> tuple[MemberLists, str]:
    raw = lists.to_json()
    return MemberLists.from_json(raw), raw


# --- fetching from the member ------------------------------------------------------------------


def fetch_lists(service: ServiceConfig) -> MemberLists:
    """Ask the member for every list its capabilities promise (all pages); never raises."""
    try:
        session = member_sessions.session_for(service, None)
        items = {
            kind.items_key: _fetch_all_pages(service, kind)
            for kind in LIST_KINDS
            if kind.capability in session.capabilities
        }
    except (MemberUnavailable, MemberFailed, MemberTimeout) as error:
        logger.warning("member %s is left out of virtual servers: %s", service.name, error.detail)
        return _down(service, error.detail)
    except GatewayError as error:  # the pool's own limit, for one: the member is not at fault
        return _down(service, error.detail)
    return MemberLists(
        service_id=service.id,
        up=True,
        capabilities=dict(session.capabilities),
        instructions=session.instructions,
        items=items,
    )


def _down(service: ServiceConfig, reason: str) -> MemberLists:
    """A down member keeps the capabilities it had, so what clients were promised still holds."""
    previous = _parsed.get(service.id)
    capabilities = previous.capabilities if previous is not None else {}
    return MemberLists(service_id=service.id, up=False, error=reason, capabilities=capabilities)


def _fetch_all_pages(service: ServiceConfig, kind: ListKind) -> tuple[Mapping[str, Any], ...]:
    items: list[Mapping[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        params = {"cursor": cursor} if cursor else {}
        message = {"jsonrpc": "2.0", "id": member_client.next_request_id(), "method": kind.method, "params": params}
        result = member_sessions.request(service, message).get("result")
        if not isinstance(result, dict):
            break  # an error answer: a member that does not serve this list after all
        items.extend(item for item in result.get(kind.items_key) or () if isinstance(item, dict))
        cursor = result.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            break
    return tuple(items)


# --- sharing through the state store -----------------------------------------------------------


def _token_key(service_id: int) -> str:
    return f"federation:lists-token:{service_id}"


def _body_key(service_id: int, token: str) -> str:
    return f"federation:lists:{service_id}:{token}"


# The lists this process parsed last, per service (and what a down member had before).
_parsed: dict[int, MemberLists] = {}
_refresh_locks: dict[int, threading.Lock] = {}
_refresh_locks_guard = threading.Lock()


def store_lists(lists: MemberLists) -> MemberLists:
    """File fetched lists for every process; return them with their token."""
    lists, raw = _with_token(lists)
    ttl = federation_settings.list_ttl_seconds if lists.up else federation_settings.down_retry_seconds
    _parsed[lists.service_id] = lists
    try:
        store = get_state_store()
        store.set(_body_key(lists.service_id, lists.token), raw, ttl=ttl + BODY_GRACE_SECONDS)
        store.set(_token_key(lists.service_id), lists.token, ttl=ttl)
    except StateStoreUnavailable as error:
        note_state_store_down("virtual server lists", error)
    return lists


def refresh(service: ServiceConfig) -> MemberLists:
    """Fetch the member's lists now and file them (one refresh per member at a time, per process)."""
    with _refresh_locks_guard:
        lock = _refresh_locks.setdefault(service.id, threading.Lock())
    with lock:
        before = _parsed.get(service.id)
        lists = store_lists(fetch_lists(service))
        if before is not None and before.up and not lists.up:
            logger.warning("member %s went down: its items leave the virtual servers (%s)", service.name, lists.error)
        elif before is not None and not before.up and lists.up:
            logger.info("member %s is back: its items return to the virtual servers", service.name)
        return lists


def _load(service_id: int, token: str | None) -> MemberLists | None:
    """The filed lists for ``token``: this process's parse when it is current, else the store's."""
    if token is None:
        return None
    cached = _parsed.get(service_id)
    if cached is not None and cached.token == token:
        return cached
    raw = get_state_store().get(_body_key(service_id, token))
    if raw is None:
        return None
    lists = _parsed[service_id] = MemberLists.from_json(raw)
    return lists


def current_lists(services: Sequence[ServiceConfig]) -> dict[int, MemberLists]:
    """Every member's current lists: filed ones, else fetched now (in parallel)."""
    found: dict[int, MemberLists] = {}
    try:
        tokens = get_state_store().get_many([_token_key(service.id) for service in services])
        for service, token in zip(services, tokens):
            if (lists := _load(service.id, token)) is not None:
                found[service.id] = lists
    except StateStoreUnavailable as error:
        note_state_store_down("virtual server lists", error)
        found = {service.id: lists for service in services if (lists := _parsed.get(service.id)) is not None}
    missing = [service for service in services if service.id not in found]
    if len(missing) == 1:
        found[missing[0].id] = refresh(missing[0])
    elif missing:
        for lists in _fetch_executor().map(refresh, missing):
            found[lists.service_id] = lists
    return found


def refresh_many(services: Sequence[ServiceConfig]) -> list[MemberLists]:
    """Refresh several members at once (the worker's schedule, the admin's button)."""
    return list(_fetch_executor().map(refresh, services))


_pending_refreshes: set[int] = set()
# When this process last asked a member filed as down whether it is back (ask_again_if_down).
_asked_again_at: dict[int, float] = {}
ASK_AGAIN_EVERY_SECONDS = 1.0


def ask_again_if_down(service: ServiceConfig) -> bool:
    """Refresh a member filed as down, unless this process asked it within the last second;
    True when it asked (a call for the member's item looks again then)."""
    now = time.monotonic()
    if now - _asked_again_at.get(service.id, 0.0) < ASK_AGAIN_EVERY_SECONDS:
        return False
    _asked_again_at[service.id] = now
    refresh(service)
    return True


def refresh_soon(service: ServiceConfig) -> None:
    """Refresh in the background (a member said its lists changed mid-call); one pending per member."""
    with _refresh_locks_guard:
        if service.id in _pending_refreshes:
            return
        _pending_refreshes.add(service.id)

    def run() -> None:
        with _refresh_locks_guard:
            _pending_refreshes.discard(service.id)
        refresh(service)

    _fetch_executor().submit(run)


def forget_parsed() -> None:
    """Drop this process's parsed lists (tests)."""
    _parsed.clear()


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _fetch_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=federation_settings.fetch_workers, thread_name_prefix="gateway-federation"
                )
    return _executor
