"""Hearing members' list changes: one standing event stream per member, deployment-wide.

A member that promises ``listChanged`` sends ``notifications/tools/list_changed`` (and the
prompt and resource ones) on the session's standing event stream (GET, the 2025 era). The
process that builds a catalog with such a member makes sure someone listens: a thread holding
a session and stream of its own, under a lease in the state store, so one process in the
deployment listens per member (when it dies, the lease lapses and the next process to build a
catalog, or the worker's schedule, takes over). On every change, and on every (re)connection,
since changes may have been missed meanwhile, the member's lists are fetched again; the new
tokens reach every process through the state store, and their clients' event streams
(``events.py``) announce the change. A member without a standing stream is refreshed on the
worker's schedule only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from urllib3.exceptions import HTTPError

from federation import member_client, member_lists
from federation.errors import MemberFailed, MemberTimeout, MemberUnavailable
from federation.member_client import EventParser, NoEventStream, SessionExpired
from gateway_project.errors import GatewayError, NoTargetAvailable
from gateway_project.state import StateStoreUnavailable, get_state_store
from performance.pools import release
from routing.balancing import choose_target
from routing.forwarding import data_arrives_within
from routing.snapshot import ServiceConfig

logger = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
RENEW_EVERY_SECONDS = 5.0
WAKE_EVERY_SECONDS = 0.5  # how soon a stopped watch notices
NO_STREAM_RETRY_SECONDS = 300.0  # a member without a standing stream is asked again after this
RECONNECT_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
LIST_CHANGED_METHODS = frozenset(
    {"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"}
)
STREAM_ERRORS = (MemberUnavailable, MemberFailed, MemberTimeout, SessionExpired, NoTargetAvailable, HTTPError, OSError)


def _lease_key(service_id: int) -> str:
    return f"federation:watch:{service_id}"


class MemberWatch(threading.Thread):
    """Listens to one member while it holds the lease; refreshes the member's lists on changes."""

    def __init__(self, service: ServiceConfig) -> None:
        super().__init__(name=f"gateway-watch-{service.name}", daemon=True)
        self.service = service
        self.owner = uuid.uuid4().hex
        self.stopped = threading.Event()
        self.listening = False  # a stream was open in this round

    def take_lease(self) -> bool:
        try:
            return get_state_store().set_if_absent(_lease_key(self.service.id), self.owner, ttl=LEASE_SECONDS)
        except StateStoreUnavailable:
            return False

    def keep_lease(self) -> bool:
        """Renew the lease while it is ours; False when it was lost (then someone else listens)."""
        store = get_state_store()
        try:
            if store.get(_lease_key(self.service.id)) != self.owner:
                return False
            return store.expire(_lease_key(self.service.id), LEASE_SECONDS)
        except StateStoreUnavailable:
            return True  # keep listening; the lease is checked again at the next renewal

    def run(self) -> None:
        failures = 0
        while not self.stopped.is_set() and self.keep_lease():
            self.listening = False
            try:
                self._listen_once()
                failures = 0
            except NoEventStream as error:
                logger.info("%s; its lists are refreshed on schedule only", error)
                _without_stream[self.service.id] = time.monotonic() + NO_STREAM_RETRY_SECONDS
                break
            except STREAM_ERRORS as error:
                logger.debug("event stream of %s ended: %s", self.service.name, error)
                failures += 1
            except GatewayError as error:
                logger.info("cannot listen to %s: %s", self.service.name, error.detail)
                failures += 1
            if (self.listening or failures == 1) and not self.stopped.is_set():
                # The member closed its stream, or could not be listened to: it may be restarting
                # or gone. Asking now files it as down at once (rather than at the next schedule)
                # when it does not answer; once per failure streak, so a dead member is not hammered.
                member_lists.refresh(self.service)
            delay = RECONNECT_BACKOFF_SECONDS[min(failures, len(RECONNECT_BACKOFF_SECONDS) - 1)]
            self.stopped.wait(delay)
        try:
            get_state_store().delete_if_equals(_lease_key(self.service.id), self.owner)
        except StateStoreUnavailable:
            pass
        with _watches_lock:
            if _watches.get(self.service.id) is self:
                del _watches[self.service.id]

    def _listen_once(self) -> None:
        session = member_client.initialize(self.service, choose_target(self.service))
        try:
            response = member_client.open_event_stream(self.service, session, read_timeout=RENEW_EVERY_SECONDS * 2)
            self.listening = True
            complete = False
            try:
                member_lists.refresh(self.service)  # whatever changed while nobody listened
                complete = self._relay_changes(response)
            finally:
                release(response, complete=complete)
        finally:
            member_client.end_session(self.service, session)

    def _relay_changes(self, response: Any) -> bool:
        """Read the stream until it ends (True) or listening stops (False)."""
        parser = EventParser()
        renew_at = time.monotonic() + RENEW_EVERY_SECONDS
        while not self.stopped.is_set():
            if time.monotonic() >= renew_at:
                if not self.keep_lease():
                    return False
                renew_at = time.monotonic() + RENEW_EVERY_SECONDS
            if not data_arrives_within(response, WAKE_EVERY_SECONDS):
                continue
            chunk = response.read1(member_client.READ_CHUNK_BYTES)
            if not chunk:
                return True
            messages = [member_client.parse_message(data) for data in parser.feed(chunk)]
            if any(message and message.get("method") in LIST_CHANGED_METHODS for message in messages):
                logger.info("member %s says its lists changed; fetching them", self.service.name)
                member_lists.refresh(self.service)
        return False


_watches: dict[int, MemberWatch] = {}
_watches_lock = threading.Lock()
# Members found without a standing stream, until when they are not asked again.
_without_stream: dict[int, float] = {}


def ensure_watching(service: ServiceConfig, capabilities: Mapping[str, Any]) -> None:
    """Listen to ``service`` from this process, unless someone already does or it promises no
    list changes."""
    if not any(isinstance(c, dict) and c.get("listChanged") for c in capabilities.values()):
        return
    if _without_stream.get(service.id, 0.0) > time.monotonic():
        return
    with _watches_lock:
        running = _watches.get(service.id)
        if running is not None and running.is_alive():
            return
        watch = MemberWatch(service)
        if not watch.take_lease():
            return
        _watches[service.id] = watch
    watch.start()


def stop_all() -> None:
    """Stop this process's watches (tests, shutdown); each ends at its next renewal at the latest."""
    with _watches_lock:
        watches = list(_watches.values())
        _watches.clear()
    for watch in watches:
        watch.stopped.set()
    for watch in watches:
        watch.join(timeout=WAKE_EVERY_SECONDS * 4)
