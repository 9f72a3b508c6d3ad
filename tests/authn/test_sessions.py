"""Gateway sessions: sliding expiry in the state store, ends that stop tokens at once, and the
worker's jobs that mirror the live copies into the database.

Each test runs on both state-store backends (the ``backend`` fixture). Time passes on the
memory store's fake clock; on Redis every key's TTL is shortened by the same amount, which is
what waiting would do, without the wait (the session timeout is a fixed 30 minutes).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

import gateway_project.state
from authn.models import GatewaySession
from authn.sessions import (
    CLEANUP_LEASE_KEY,
    FLUSH_LEASE_KEY,
    JOB_LEASE_SECONDS,
    SESSION_TIMEOUT_SECONDS,
    cleanup_expired_sessions,
    end_session,
    end_sessions_of_user,
    flush_sessions,
    session_is_alive,
    session_key,
    start_session,
    touch_session,
)
from gateway_project.state import StateStoreUnavailable
from gateway_project.worker import PERIODIC_JOBS, JobSchedule, run_round
from tests.gateway_project.conftest import REDIS_TEST_URL, Backend

MINUTE = 60.0
# Redis TTLs run on real time and the database clock is the wall clock: comparisons of the
# mirrored times allow this much.
CLOCK_SLACK = timedelta(seconds=5)


class SessionTime:
    """Lets time pass for every key of the test's store, in the backend's own way."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def passes(self, seconds: float) -> None:
        if self.backend.name == "memory":
            self.backend.clock.advance(seconds)
            return
        client = redis.Redis.from_url(REDIS_TEST_URL)
        try:
            for key in client.scan_iter(match=self.backend.prefixes[-1] + "*"):
                remaining_ms = client.pttl(key)
                if remaining_ms < 0:  # no TTL
                    continue
                left_ms = remaining_ms - int(seconds * 1000)
                if left_ms > 0:
                    client.pexpire(key, left_ms)
                else:
                    client.delete(key)
        finally:
            client.close()


@pytest.fixture
def live_store(store: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The backend's store as the process-wide one, which authn.sessions reads."""
    monkeypatch.setattr(gateway_project.state, "_store", store)
    return store


@pytest.fixture
def time_passing(backend: Backend, live_store: Any) -> SessionTime:
    return SessionTime(backend)


@pytest.fixture
def alice(db: Any) -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def bob(db: Any) -> User:
    return User.objects.create_user("bob")


def open_session(user: User, **overrides: Any) -> str:
    fields: dict[str, Any] = {"client_ip": "203.0.113.7", "user_agent": "claude-code/1.0"}
    fields.update(overrides)
    return start_session(user, **fields)


def row(session_id: str) -> GatewaySession:
    return GatewaySession.objects.get(pk=session_id)


def assert_close(actual: datetime | None, expected: datetime) -> None:
    assert actual is not None
    assert abs(actual - expected) <= CLOCK_SLACK, f"{actual} is not within {CLOCK_SLACK} of {expected}"


class CountingStore:
    """A real store that also records which of its methods were called, with what."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            return method(*args, **kwargs)

        return counted


# --- starting ------------------------------------------------------------------------------------


def test_a_new_session_has_a_row_and_a_live_copy(live_store: Any, alice: User) -> None:
    before = timezone.now()
    session_id = open_session(alice, metadata={"grant_type": "password"})
    session = row(session_id)
    assert len(session_id) == 32 and session.user == alice
    assert (session.client_ip, session.user_agent, session.metadata) == (
        "203.0.113.7", "claude-code/1.0", {"grant_type": "password"},
    )
    assert session.ended_at is None and session.last_activity_at == session.created_at >= before
    assert session.expires_at == session.created_at + timedelta(seconds=SESSION_TIMEOUT_SECONDS)
    live = json.loads(live_store.get(session_key(session_id)))
    assert (live["user_id"], live["ip"], live["ua"]) == (alice.pk, "203.0.113.7", "claude-code/1.0")
    assert SESSION_TIMEOUT_SECONDS - 5 < live_store.ttl(session_key(session_id)) <= SESSION_TIMEOUT_SECONDS
    assert session_is_alive(session_id)


def test_every_session_gets_its_own_id(live_store: Any, alice: User) -> None:
    assert len({open_session(alice) for _ in range(5)}) == 5


@pytest.mark.parametrize(
    ("client_ip", "user_agent", "stored_ip", "stored_agent_length"),
    [
        ("not an address", "ua", None, 2),
        (None, "", None, 0),
        ("2001:db8::1", "x" * 2000, "2001:db8::1", 512),
    ],
    ids=["unparseable-ip", "nothing-known", "ipv6-and-huge-agent"],
)
def test_odd_client_details_are_stored_as_well_as_they_can_be(
    live_store: Any, alice: User, client_ip: str | None, user_agent: str, stored_ip: str | None, stored_agent_length: int
) -> None:
    session = row(start_session(alice, client_ip=client_ip, user_agent=user_agent))
    assert session.client_ip == stored_ip and len(session.user_agent) == stored_agent_length


def test_a_failed_row_write_leaves_no_live_copy(
    live_store: Any, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingStore(live_store)
    monkeypatch.setattr(gateway_project.state, "_store", counting)
    with pytest.raises(TypeError), transaction.atomic():  # the savepoint keeps the test's transaction usable
        start_session(alice, client_ip=None, user_agent="ua", metadata={"not json": object()})
    assert not GatewaySession.objects.exists()
    (written_key,) = [args[0] for name, args in counting.calls if name == "set"]
    assert written_key.startswith(session_key(""))
    assert live_store.get(written_key) is None


# --- sliding expiry ------------------------------------------------------------------------------


def test_an_unused_session_expires_after_thirty_minutes(time_passing: SessionTime, alice: User) -> None:
    session_id = open_session(alice)
    time_passing.passes(SESSION_TIMEOUT_SECONDS - 5)
    assert session_is_alive(session_id)
    time_passing.passes(10)
    assert not session_is_alive(session_id)
    assert touch_session(session_id) is False


def test_touching_a_session_slides_its_expiry(time_passing: SessionTime, alice: User) -> None:
    session_id = open_session(alice)
    time_passing.passes(20 * MINUTE)
    assert touch_session(session_id) is True
    time_passing.passes(20 * MINUTE)  # 40 minutes after the start, 20 after the touch
    assert touch_session(session_id) is True
    time_passing.passes(SESSION_TIMEOUT_SECONDS + 5)
    assert touch_session(session_id) is False


def test_checking_a_session_does_not_extend_it(time_passing: SessionTime, alice: User) -> None:
    session_id = open_session(alice)
    time_passing.passes(20 * MINUTE)
    assert session_is_alive(session_id)
    time_passing.passes(11 * MINUTE)
    assert not session_is_alive(session_id)


def test_touching_an_unknown_session_returns_false(live_store: Any) -> None:
    assert touch_session("no-such-session") is False
    assert session_is_alive("no-such-session") is False


def test_touch_is_one_state_store_call_and_no_database_query(
    live_store: Any, alice: User, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    session_id = open_session(alice)
    counting = CountingStore(live_store)
    monkeypatch.setattr(gateway_project.state, "_store", counting)
    with django_assert_num_queries(0):
        assert touch_session(session_id) is True
        assert touch_session("ended-or-unknown") is False
    assert [name for name, _ in counting.calls] == ["expire", "expire"]


def test_touch_fails_closed_when_the_state_store_is_down(state_store_down: None) -> None:
    with pytest.raises(StateStoreUnavailable):
        touch_session("any-session")
    with pytest.raises(StateStoreUnavailable):
        session_is_alive("any-session")


# --- ending --------------------------------------------------------------------------------------


def test_an_ended_session_stops_at_once(time_passing: SessionTime, alice: User) -> None:
    session_id = open_session(alice)
    time_passing.passes(10 * MINUTE)
    assert end_session(session_id) is True
    assert touch_session(session_id) is False
    assert not session_is_alive(session_id)
    session = row(session_id)
    now = timezone.now()
    assert_close(session.ended_at, now)
    # The row records the session as it was when ended: idle 10 minutes, 20 minutes left.
    assert_close(session.last_activity_at, now - timedelta(minutes=10))
    assert_close(session.expires_at, now + timedelta(minutes=20))
    assert session.ended_at is not None and session.ended_at < session.expires_at


def test_ending_a_session_twice_returns_false_the_second_time(live_store: Any, alice: User) -> None:
    session_id = open_session(alice)
    assert end_session(session_id) is True
    ended_at = row(session_id).ended_at
    assert end_session(session_id) is False
    assert row(session_id).ended_at == ended_at


def test_ending_an_unknown_session_returns_false(live_store: Any, db: Any) -> None:
    assert end_session("no-such-session") is False


def test_ending_an_expired_session_returns_false_and_records_the_expiry(
    time_passing: SessionTime, alice: User
) -> None:
    session_id = open_session(alice)
    time_passing.passes(SESSION_TIMEOUT_SECONDS + 5)
    assert end_session(session_id) is False
    session = row(session_id)
    assert session.ended_at is not None and session.ended_at == session.expires_at


def test_ending_a_users_sessions_leaves_other_users_alone(live_store: Any, alice: User, bob: User) -> None:
    alices = [open_session(alice), open_session(alice)]
    already_ended = open_session(alice)
    end_session(already_ended)
    bobs = open_session(bob)
    assert end_sessions_of_user(alice.pk) == 2
    assert not any(session_is_alive(session_id) for session_id in alices)
    assert session_is_alive(bobs)
    assert GatewaySession.objects.filter(user=alice, ended_at__isnull=True).count() == 0
    assert end_sessions_of_user(alice.pk) == 0


def test_ending_needs_the_state_store(state_store_down: None, alice: User) -> None:
    now = timezone.now()
    GatewaySession.objects.create(
        id="s1", user=alice, created_at=now, last_activity_at=now, expires_at=now + timedelta(minutes=30)
    )
    with pytest.raises(StateStoreUnavailable):
        end_session("s1")
    assert row("s1").ended_at is None  # not recorded as ended while its tokens may still work


# --- the flush job -------------------------------------------------------------------------------


def test_flush_mirrors_the_last_activity_into_the_row(
    time_passing: SessionTime, alice: User, django_assert_num_queries: Any
) -> None:
    session_id = open_session(alice)
    created = row(session_id).created_at
    time_passing.passes(10 * MINUTE)
    with django_assert_num_queries(0):
        assert touch_session(session_id)  # the request path writes nothing to the database
    time_passing.passes(4 * MINUTE)
    assert row(session_id).last_activity_at == created  # not until the flush
    assert flush_sessions() == 1
    session, now = row(session_id), timezone.now()
    assert_close(session.last_activity_at, now - timedelta(minutes=4))
    assert_close(session.expires_at, now + timedelta(minutes=26))
    assert session.ended_at is None


def test_flush_does_not_rewrite_rows_whose_activity_did_not_move(live_store: Any, alice: User) -> None:
    open_session(alice)
    assert flush_sessions() == 0  # the row already says what the live copy says
    open_session(alice)
    assert flush_sessions() == 0


def test_flush_records_a_session_whose_live_copy_is_gone_as_expired(time_passing: SessionTime, alice: User) -> None:
    expired, alive = open_session(alice), open_session(alice)
    time_passing.passes(20 * MINUTE)
    touch_session(alive)
    time_passing.passes(15 * MINUTE)
    assert flush_sessions() == 2
    session = row(expired)
    assert session.ended_at is not None and session.ended_at == session.expires_at
    assert session.ended_at <= timezone.now()
    assert row(alive).ended_at is None


def test_flush_leaves_ended_rows_alone(live_store: Any, alice: User) -> None:
    session_id = open_session(alice)
    end_session(session_id)
    before = row(session_id)
    assert flush_sessions() == 0
    after = row(session_id)
    assert (after.ended_at, after.expires_at, after.last_activity_at) == (
        before.ended_at, before.expires_at, before.last_activity_at,
    )


def test_flush_waits_while_another_worker_holds_the_lease(time_passing: SessionTime, alice: User) -> None:
    session_id = open_session(alice)
    time_passing.passes(5 * MINUTE)
    store = gateway_project.state.get_state_store()
    assert store.set_if_absent(FLUSH_LEASE_KEY, "another-worker", ttl=JOB_LEASE_SECONDS)
    assert flush_sessions() == 0
    assert row(session_id).last_activity_at == row(session_id).created_at
    assert store.get(FLUSH_LEASE_KEY) == "another-worker"  # not released by a worker that did not hold it
    time_passing.passes(JOB_LEASE_SECONDS + 1)  # that worker died: its lease lapses
    assert flush_sessions() == 1


class SecondWorkerMidFlush:
    """A real store on which a second worker tries to flush while the first one is reading."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.second_worker_flushed: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def ttl(self, key: str) -> float | None:
        if self.second_worker_flushed is None:
            self.second_worker_flushed = flush_sessions()
        return self._store.ttl(key)


def test_two_flushes_at_once_do_the_work_once(
    time_passing: SessionTime, live_store: Any, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = open_session(alice)
    time_passing.passes(5 * MINUTE)
    racing = SecondWorkerMidFlush(live_store)
    monkeypatch.setattr(gateway_project.state, "_store", racing)
    assert flush_sessions() == 1
    assert racing.second_worker_flushed == 0
    assert live_store.get(FLUSH_LEASE_KEY) is None  # released when done
    assert_close(row(session_id).last_activity_at, timezone.now() - timedelta(minutes=5))


def test_flush_ends_nothing_while_the_state_store_is_down(state_store_down: None, alice: User) -> None:
    now = timezone.now()
    GatewaySession.objects.create(
        id="s1", user=alice, created_at=now, last_activity_at=now, expires_at=now - timedelta(minutes=1)
    )
    assert flush_sessions() == 0
    assert cleanup_expired_sessions() == 0
    assert row("s1").ended_at is None


# --- the cleanup job -----------------------------------------------------------------------------


def test_cleanup_ends_the_rows_of_expired_sessions(time_passing: SessionTime, alice: User) -> None:
    expired, alive = open_session(alice), open_session(alice)
    expires_at = row(expired).expires_at
    time_passing.passes(20 * MINUTE)
    touch_session(alive)
    time_passing.passes(15 * MINUTE)
    later = timezone.now() + timedelta(minutes=35)  # the database's view of the same moment
    assert cleanup_expired_sessions(now=later) == 1
    assert row(expired).ended_at == expires_at  # when it expired, not when it was noticed
    assert row(alive).ended_at is None
    assert cleanup_expired_sessions(now=later) == 0


def test_cleanup_records_a_lost_live_copy_as_expired_now(time_passing: SessionTime, alice: User) -> None:
    """A live copy gone before its row's expiry (Redis flushed, embedded gateway restarted)."""
    session_id = open_session(alice)
    gateway_project.state.get_state_store().delete(session_key(session_id))
    now = timezone.now() + timedelta(minutes=1)
    assert cleanup_expired_sessions(now=now) == 1
    session = row(session_id)
    assert session.ended_at == session.expires_at == now


def test_cleanup_deletes_the_live_copy_of_a_row_ended_elsewhere(live_store: Any, alice: User) -> None:
    """E.g. ended by a management command whose process had its own in-memory store."""
    session_id = open_session(alice)
    GatewaySession.objects.filter(pk=session_id).update(ended_at=timezone.now())
    assert touch_session(session_id) is True  # the row alone does not stop the tokens
    assert cleanup_expired_sessions() == 1
    assert touch_session(session_id) is False
    assert cleanup_expired_sessions() == 0


def test_cleanup_waits_while_another_worker_holds_the_lease(time_passing: SessionTime, alice: User) -> None:
    session_id = open_session(alice)
    time_passing.passes(SESSION_TIMEOUT_SECONDS + 5)
    store = gateway_project.state.get_state_store()
    assert store.set_if_absent(CLEANUP_LEASE_KEY, "another-worker", ttl=JOB_LEASE_SECONDS)
    assert cleanup_expired_sessions() == 0
    assert row(session_id).ended_at is None
    store.delete(CLEANUP_LEASE_KEY)
    assert cleanup_expired_sessions() == 1
    assert store.get(CLEANUP_LEASE_KEY) is None


# --- in the worker -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "every_seconds"), [("session activity", 30.0), ("expired sessions", 300.0)]
)
def test_the_worker_runs_the_session_jobs_on_their_intervals(name: str, every_seconds: float) -> None:
    job = next(job for job in PERIODIC_JOBS if job.name == name)
    assert job.every_seconds == every_seconds


def test_a_worker_round_flushes_activity_and_ends_expired_sessions(time_passing: SessionTime, alice: User) -> None:
    expired, alive = open_session(alice), open_session(alice)
    time_passing.passes(20 * MINUTE)
    touch_session(alive)
    time_passing.passes(15 * MINUTE)
    jobs = [job for job in PERIODIC_JOBS if job.name in ("session activity", "expired sessions")]
    assert run_round(JobSchedule(jobs)) == []
    assert row(expired).ended_at is not None
    assert_close(row(alive).last_activity_at, timezone.now() - timedelta(minutes=15))
