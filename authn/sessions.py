"""Gateway sessions: one login, whose tokens live exactly as long as it does.

A session has two copies, each for the reader that needs it:

- the **live copy** in the state store (``authn:session:<id>``, a TTL of 30 minutes that every
  authenticated request slides forward). It is the truth: a token is good while its session's
  key exists, so ending a session (deleting the key) stops its tokens in every process at once,
  and a session nobody uses simply expires there without anyone writing anything;
- the **row** (``GatewaySession``) in the database, for the admin and for history. The hot path
  never writes it: the worker's ``flush_sessions`` copies the live TTLs into it in bulk every
  ~30 s, and ``cleanup_expired_sessions`` records the sessions whose live copy is gone.

So a request costs one state-store call (``touch_session``) and no database query, and the
admin's view of activity is at most one flush behind.

When a session ends, its row keeps what happened: ``ended_at`` before ``expires_at`` means it was
ended (logout, admin, a deactivated user); ``ended_at`` equal to ``expires_at`` means it expired.

    >>> session_id = start_session(user, client_ip="203.0.113.7", user_agent="claude-code/1.0")
    >>> touch_session(session_id)
    True
    >>> end_session(session_id)
    True
    >>> touch_session(session_id)
    False
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from authn.models import GatewaySession
from gateway_project.state import StateStore, StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down

SESSION_TIMEOUT_SECONDS = 30 * 60  # fixed: 30 minutes, sliding
SESSION_ID_BYTES = 24  # token_urlsafe(24): 32 characters, 192 random bits

# The worker's jobs (gateway_project/worker.py) and the leases that make one worker run each.
SESSION_FLUSH_EVERY_SECONDS = 30.0
SESSION_CLEANUP_EVERY_SECONDS = 300.0
FLUSH_LEASE_KEY = "authn:sessions:flush-lease"
CLEANUP_LEASE_KEY = "authn:sessions:cleanup-lease"
# Longer than a job takes, so only a worker that died mid-job lets its lease lapse.
JOB_LEASE_SECONDS = 120.0

# The flush rewrites a row only when its activity moved at least this much: an idle session's
# row is not rewritten every 30 s for nothing.
FLUSH_RESOLUTION_SECONDS = 1.0
# Rows and keys are handled in chunks, so many sessions never mean one huge query or reply.
BATCH_SIZE = 500
# Cleanup deletes the live keys of rows ended this recently. A live key outlives its row's end
# only when the end was written where the key could not be deleted (another process's
# in-memory store in the embedded shape); a key nobody touches is gone after the timeout anyway.
ENDED_KEY_SWEEP_SECONDS = 24 * 60 * 60

USER_AGENT_MAX_LENGTH = GatewaySession._meta.get_field("user_agent").max_length or 512

T = TypeVar("T")

logger = logging.getLogger(__name__)


def session_key(session_id: str) -> str:
    """The state-store key of a session's live copy."""
    return f"authn:session:{session_id}"


# --- one session ---------------------------------------------------------------------------------


def start_session(user: AbstractBaseUser, *, client_ip: str | None, user_agent: str, metadata: dict | None = None) -> str:
    """Open a session for ``user`` and return its new id (the tokens carry it as a claim).

    The live copy is written before the row: the jobs end rows whose live copy is missing, so
    the other order would let a flush running in between end a session being born. An
    unparseable ``client_ip`` is stored as unknown (None) rather than refusing the login: it is
    a record for the admin, not a credential.
    """
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    now = timezone.now()
    ip = _normalized_ip(client_ip)
    user_agent = (user_agent or "")[:USER_AGENT_MAX_LENGTH]
    store = get_state_store()
    live_copy = {"user_id": user.pk, "created": now.isoformat(), "ip": ip, "ua": user_agent}
    store.set(session_key(session_id), json.dumps(live_copy), ttl=SESSION_TIMEOUT_SECONDS)
    try:
        GatewaySession.objects.create(
            id=session_id,
            user_id=user.pk,
            created_at=now,
            last_activity_at=now,
            expires_at=now + timedelta(seconds=SESSION_TIMEOUT_SECONDS),
            client_ip=ip,
            user_agent=user_agent,
            metadata=metadata or {},
        )
    except Exception:
        store.delete(session_key(session_id))  # no row, no session: its tokens must not work
        raise
    return session_id


def touch_session(session_id: str) -> bool:
    """Slide the session's expiry; True while it is alive, False once ended or expired.

    The hot path: every request with a gateway JWT calls this, so it is exactly one state-store
    call and no database query. ``StateStoreUnavailable`` propagates: the caller fails closed.
    """
    return get_state_store().expire(session_key(session_id), SESSION_TIMEOUT_SECONDS)


def session_is_alive(session_id: str) -> bool:
    """Whether the session's tokens are still good, without extending it."""
    return get_state_store().get(session_key(session_id)) is not None


def end_session(session_id: str) -> bool:
    """End a session now: its tokens stop working in every process at once.

    False when the session is unknown, already ended, or had already expired (its row then
    records the expiry). ``StateStoreUnavailable`` propagates: the tokens could not be stopped.
    """
    return _end_sessions(get_state_store(), [session_id], timezone.now()) == 1


def end_sessions_of_user(user_id: int) -> int:
    """End every live session of a user (deactivated, password changed); return how many."""
    session_ids = list(
        GatewaySession.objects.filter(user_id=user_id, ended_at__isnull=True).values_list("id", flat=True)
    )
    return _end_sessions(get_state_store(), session_ids, timezone.now())


def _end_sessions(store: StateStore, session_ids: Sequence[str], now: datetime) -> int:
    """Delete the live copies first (the part that stops tokens), then record the ends."""
    remaining: dict[str, float] = {}
    for session_id in session_ids:
        ttl = store.ttl(session_key(session_id))
        store.delete(session_key(session_id))
        if ttl is not None:
            remaining[session_id] = ttl
    ended = sum(_record_end(session_id, ttl, now) for session_id, ttl in remaining.items())
    _record_vanished([session_id for session_id in session_ids if session_id not in remaining], now)
    return ended


def _record_end(session_id: str, ttl: float, now: datetime) -> int:
    """Write an ended live session's row as of now: its activity, its expiry, and its end."""
    return GatewaySession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        ended_at=now, last_activity_at=_last_activity(now, ttl), expires_at=now + timedelta(seconds=ttl)
    )


# --- the worker's jobs ---------------------------------------------------------------------------


def flush_sessions() -> int:
    """Copy the live sessions' activity into their rows; return how many rows were written.

    For each row not ended, the live copy's TTL says when the session was last used
    (``now - (timeout - ttl)``) and when it will expire (``now + ttl``); rows whose live copy is
    gone are recorded as expired. Bulk writes, one worker at a time (a lease in the state store).
    While the state store is down there is nothing to read: a throttled warning, and no row is
    ended for lack of an answer.
    """
    store = get_state_store()
    try:
        return _under_lease(store, FLUSH_LEASE_KEY, lambda: _flush(store, timezone.now()))
    except StateStoreUnavailable as exc:
        note_state_store_down("session flush", exc)
        return 0


def cleanup_expired_sessions(now: datetime | None = None) -> int:
    """End the rows whose live copy is gone, and delete the live copies of ended rows.

    Returns how many rows were ended plus how many live keys were deleted. The flush records
    expiries too, every 30 s; this job also works the other way round: a row ended where its
    live copy could not be deleted (another process's in-memory store) gets its tokens stopped.
    ``now`` is the database's idea of the present (tests pass their own).
    """
    now = now or timezone.now()
    store = get_state_store()
    try:
        return _under_lease(store, CLEANUP_LEASE_KEY, lambda: _cleanup(store, now))
    except StateStoreUnavailable as exc:
        note_state_store_down("session cleanup", exc)
        return 0


def run_session_flush() -> None:
    """The worker's job every ``SESSION_FLUSH_EVERY_SECONDS`` (gateway_project/worker.py)."""
    written = flush_sessions()
    if written:
        logger.debug("activity of %d session(s) flushed", written)


def run_session_cleanup() -> None:
    """The worker's job every ``SESSION_CLEANUP_EVERY_SECONDS`` (gateway_project/worker.py)."""
    cleaned = cleanup_expired_sessions()
    if cleaned:
        logger.info("%d expired or ended session(s) cleaned up", cleaned)


def _under_lease(store: StateStore, lease_key: str, job: Callable[[], int]) -> int:
    """Run ``job`` if this worker wins the lease (0 otherwise); release it only if still ours."""
    token = uuid.uuid4().hex
    if not store.set_if_absent(lease_key, token, ttl=JOB_LEASE_SECONDS):
        return 0
    try:
        return job()
    finally:
        store.delete_if_equals(lease_key, token)


def _flush(store: StateStore, now: datetime) -> int:
    written = 0
    for rows in _batches(_open_rows()):
        moved: list[GatewaySession] = []
        vanished: list[str] = []
        for session_id, last_activity_at in rows:
            ttl = store.ttl(session_key(session_id))
            if ttl is None:
                vanished.append(session_id)
                continue
            activity = _last_activity(now, ttl)
            if abs((activity - last_activity_at).total_seconds()) >= FLUSH_RESOLUTION_SECONDS:
                moved.append(
                    GatewaySession(id=session_id, last_activity_at=activity, expires_at=now + timedelta(seconds=ttl))
                )
        written += _write_activity(moved)
        written += _record_vanished(vanished, now)
    return written


def _cleanup(store: StateStore, now: datetime) -> int:
    return _end_rows_without_live_copy(store, now) + _delete_live_copies_of_ended_rows(store, now)


def _end_rows_without_live_copy(store: StateStore, now: datetime) -> int:
    ended = 0
    for rows in _batches(_open_rows()):
        session_ids = [session_id for session_id, _ in rows]
        live = store.get_many([session_key(session_id) for session_id in session_ids])
        ended += _record_vanished([sid for sid, value in zip(session_ids, live) if value is None], now)
    return ended


def _delete_live_copies_of_ended_rows(store: StateStore, now: datetime) -> int:
    recently_ended = GatewaySession.objects.filter(
        ended_at__isnull=False, ended_at__gte=now - timedelta(seconds=ENDED_KEY_SWEEP_SECONDS)
    ).values_list("id", flat=True)
    deleted = 0
    for session_ids in _batches(list(recently_ended)):
        live = store.get_many([session_key(session_id) for session_id in session_ids])
        for session_id in (sid for sid, value in zip(session_ids, live) if value is not None):
            store.delete(session_key(session_id))
            deleted += 1
    return deleted


def _open_rows() -> list[tuple[str, datetime]]:
    """(id, last_activity_at) of every row not ended.

    Read whole rather than streamed: the jobs update these rows while going through them, and
    SQLite gives a cursor no isolation from its own connection's writes.
    """
    return list(GatewaySession.objects.filter(ended_at__isnull=True).values_list("id", "last_activity_at"))


def _write_activity(sessions: list[GatewaySession]) -> int:
    if not sessions:
        return 0
    with transaction.atomic():
        return GatewaySession.objects.bulk_update(sessions, ["last_activity_at", "expires_at"], batch_size=BATCH_SIZE)


def _record_vanished(session_ids: Sequence[str], now: datetime) -> int:
    """Record the sessions whose live copy is gone as expired (``ended_at == expires_at``).

    Normally the row's expiry has passed and is kept. One still in the future means the live
    copy was lost (a Redis flush, an embedded gateway restarted): it expired now.
    """
    if not session_ids:
        return 0
    rows = GatewaySession.objects.filter(pk__in=session_ids, ended_at__isnull=True)
    with transaction.atomic():
        expired = rows.filter(expires_at__lte=now).update(ended_at=F("expires_at"))
        lost = rows.filter(expires_at__gt=now).update(ended_at=now, expires_at=now)
    return expired + lost


def _last_activity(now: datetime, ttl: float) -> datetime:
    """The last touch reset the TTL to the full timeout, so the time it has lost since is idle time."""
    return now - timedelta(seconds=max(0.0, SESSION_TIMEOUT_SECONDS - ttl))


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]


def _normalized_ip(client_ip: str | None) -> str | None:
    if not client_ip:
        return None
    try:
        return str(ipaddress.ip_address(client_ip.strip()))
    except ValueError:
        return None
