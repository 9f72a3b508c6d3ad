"""Telling clients that a virtual server's lists changed.

A client keeps a stream open to hear of changes: in the 2025 era the session's GET stream, in
the 2026-07-28 era a ``subscriptions/listen`` request, whose answer is that stream (first an
acknowledgement naming the notifications the gateway will send, then each notification stamped
with the subscription's id). Either stream checks, every ``GATEWAY_FEDERATION_EVENT_POLL_SECONDS``,
the digests of what the virtual server lists (``Catalog.digests``): a member's change reaches
every gateway process through the member tokens in the state store (``member_lists``), an
approval or rule change through the config version, and each moved digest becomes a
``notifications/<kind>/list_changed``. Between events a keep-alive comment goes out every few
seconds, so a client that left frees its thread (a WSGI server only learns that on a write).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from federation.catalog import current_catalog
from federation.conf import federation_settings
from federation.relay import sse_event
from federation.snapshot import virtual_server_for_service
from routing.conf import routing_settings
from routing.forwarding import KEEPALIVE_COMMENT

logger = logging.getLogger(__name__)

# Catalog list -> the notification that announces its change.
LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "prompts": "notifications/prompts/list_changed",
    "resources": "notifications/resources/list_changed",
    "resourceTemplates": "notifications/resources/list_changed",
}
# subscriptions/listen filter flag -> the catalog lists it covers.
LISTEN_FILTERS = {
    "toolsListChanged": ("tools",),
    "promptsListChanged": ("prompts",),
    "resourcesListChanged": ("resources", "resourceTemplates"),
}

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class ListChangeStream:
    """The bytes of one client's event stream: an optional first event, then list changes and
    keep-alive comments, until the client leaves (or the virtual server is gone)."""

    def __init__(
        self,
        service_id: int,
        *,
        lists: tuple[str, ...] = tuple(LIST_CHANGED),
        meta: Mapping[str, Any] | None = None,
        first_event: bytes = b"",
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._service_id = service_id
        self._lists = lists
        self._meta = dict(meta or {})
        self._pending = first_event
        self._clock = clock
        self._sleep = sleep
        self._digests = self._current_digests()
        self._next_keepalive = clock() + routing_settings.stream_keepalive_seconds
        self._ended = self._digests is None

    def __iter__(self) -> ListChangeStream:
        return self

    def __next__(self) -> bytes:
        if self._pending:
            event, self._pending = self._pending, b""
            return event
        while not self._ended:
            changed = self._changes()
            if changed:
                return changed
            now = self._clock()
            if now >= self._next_keepalive:
                self._next_keepalive = now + routing_settings.stream_keepalive_seconds
                return KEEPALIVE_COMMENT
            self._sleep(min(federation_settings.event_poll_seconds, self._next_keepalive - now))
        raise StopIteration

    def _current_digests(self) -> Mapping[str, str] | None:
        config = virtual_server_for_service(self._service_id)
        if config is None:
            return None
        try:
            return current_catalog(config).digests
        except Exception:  # a failing check must not end the client's stream; the next may pass
            logger.exception("checking a virtual server's lists for changes failed")
            return self._digests

    def _changes(self) -> bytes:
        digests = self._current_digests()
        if digests is None:
            self._ended = True  # disabled or deleted meanwhile
            return b""
        previous, self._digests = self._digests or {}, digests
        methods = []
        for key in self._lists:
            method = LIST_CHANGED[key]
            if digests.get(key) != previous.get(key) and method not in methods:
                methods.append(method)
        return b"".join(sse_event(self._notification(method)) for method in methods)

    def _notification(self, method: str) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if self._meta:
            message["params"] = {"_meta": self._meta}
        return message

    def close(self) -> None:
        self._ended = True


def honored_filter(requested: Any) -> dict[str, bool]:
    """The part of a ``subscriptions/listen`` filter the gateway serves (list changes; not
    resource subscriptions)."""
    if not isinstance(requested, dict):
        return {}
    return {flag: True for flag in LISTEN_FILTERS if requested.get(flag) is True}


def lists_of(honored: Mapping[str, bool]) -> tuple[str, ...]:
    return tuple(key for flag in honored for key in LISTEN_FILTERS[flag])
