"""The state-store contract, run against both backends: in-process memory and real Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from gateway_project.state import StateStoreUnavailable, get_state_store, reset_state_store
from gateway_project.state.memory import MemoryStateStore
from gateway_project.state.redis_store import RedisStateStore
from tests.gateway_project.conftest import (
    CLOSED_REDIS_URL,
    REDIS_TEST_URL,
    Backend,
    FakeClock,
    delete_redis_keys,
    redis_url_setting,
    unique_prefix,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

THREADS = 16
INCRS_PER_THREAD = 500


def run_in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(index)
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so unguarded code interleaves
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(previous_interval)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


# --- get / set ---------------------------------------------------------------------------------


def test_missing_key_reads_as_none(store: Any) -> None:
    """A key never written reads as None."""
    assert store.get("never-written") is None


def test_set_then_get_returns_the_value(store: Any) -> None:
    """What is set is what is read back, unchanged."""
    store.set("greeting", "héllo wörld:42")
    assert store.get("greeting") == "héllo wörld:42"


def test_set_replaces_the_previous_value(store: Any) -> None:
    """A second set overwrites the first."""
    store.set("k", "first")
    store.set("k", "second")
    assert store.get("k") == "second"


def test_get_many_reads_several_keys_in_order(backend: Backend, store: Any) -> None:
    """get_many answers in the order asked, None for missing and expired keys."""
    store.set("a", "1")
    store.set("b", "2", ttl=backend.short_ttl)
    assert store.get_many(["b", "missing", "a"]) == ["2", None, "1"]
    assert store.get_many([]) == []
    assert backend.wait_until_gone(store, "b", backend.short_ttl)
    assert store.get_many(["a", "b"]) == ["1", None]


def test_ttl_reports_the_time_left(backend: Backend, store: Any) -> None:
    """ttl gives the seconds left, None for a permanent or a missing key."""
    store.set("brief", "v", ttl=backend.long_ttl)
    store.set("forever", "v")
    left = store.ttl("brief")
    assert left is not None and backend.long_ttl - 5 < left <= backend.long_ttl
    assert store.ttl("forever") is None
    assert store.ttl("missing") is None


def test_set_with_ttl_expires(backend: Backend, store: Any) -> None:
    """A value set with a TTL is readable at first and gone once the TTL has run out."""
    store.set("k", "v", ttl=backend.short_ttl)
    assert store.get("k") == "v"
    assert backend.wait_until_gone(store, "k", backend.short_ttl)


def test_set_without_ttl_keeps_the_value(backend: Backend, store: Any) -> None:
    """A value set without a TTL outlives any short TTL."""
    store.set("forever", "v")
    store.set("brief", "v", ttl=backend.short_ttl)
    assert backend.wait_until_gone(store, "brief", backend.short_ttl)
    backend.let_time_pass(backend.short_ttl)
    assert store.get("forever") == "v"


def test_set_without_ttl_clears_an_earlier_ttl(backend: Backend, store: Any) -> None:
    """Replacing a value without a TTL makes it permanent, like a fresh set."""
    store.set("k", "old", ttl=backend.short_ttl)
    store.set("k", "new")
    backend.let_time_pass(backend.short_ttl * 2)
    assert store.get("k") == "new"


def test_memory_expiry_follows_the_injected_clock_exactly() -> None:
    """Memory: a key lives until the clock reaches set time + ttl, and not a moment longer."""
    clock = FakeClock()
    store = MemoryStateStore(prefix=unique_prefix(), clock=clock)
    store.set("k", "v", ttl=10)
    clock.advance(9.5)
    assert store.get("k") == "v"
    clock.advance(0.5)
    assert store.get("k") is None


def test_redis_ttl_is_given_in_seconds_and_stored_in_milliseconds(redis_client: redis.Redis) -> None:
    """Redis: ttl=30.5 seconds becomes a PTTL of just under 30500 ms; no ttl means no expiry."""
    prefix = unique_prefix()
    store = RedisStateStore(REDIS_TEST_URL, prefix=prefix)
    try:
        store.set("timed", "v", ttl=30.5)
        store.set("forever", "v")
        assert 29_000 < redis_client.pttl(prefix + "timed") <= 30_500
        assert redis_client.pttl(prefix + "forever") == -1
    finally:
        delete_redis_keys(prefix)


def test_redis_keys_live_under_the_store_prefix(redis_client: redis.Redis) -> None:
    """Redis: the store writes ``prefix + key`` and nothing else."""
    prefix = unique_prefix()
    store = RedisStateStore(REDIS_TEST_URL, prefix=prefix)
    try:
        store.set("k", "v")
        store.incr("n", 3)
        assert redis_client.get(prefix + "k") == "v"
        assert redis_client.get(prefix + "n") == "3"
        assert sorted(redis_client.scan_iter(match=prefix + "*")) == [prefix + "k", prefix + "n"]
    finally:
        delete_redis_keys(prefix)


# --- set_if_absent -----------------------------------------------------------------------------


def test_set_if_absent_first_caller_wins(store: Any) -> None:
    """The first set_if_absent stores its value; a second one is refused and changes nothing."""
    assert store.set_if_absent("lock", "owner-a") is True
    assert store.set_if_absent("lock", "owner-b") is False
    assert store.get("lock") == "owner-a"


def test_set_if_absent_is_refused_over_a_plain_set_value(store: Any) -> None:
    """set_if_absent respects a value written by an ordinary set."""
    store.set("lock", "existing")
    assert store.set_if_absent("lock", "newcomer") is False
    assert store.get("lock") == "existing"


def test_set_if_absent_is_allowed_again_after_expiry(backend: Backend, store: Any) -> None:
    """A lease that expired can be taken by someone else."""
    assert store.set_if_absent("lease", "owner-a", ttl=backend.short_ttl) is True
    assert backend.wait_until_gone(store, "lease", backend.short_ttl)
    assert store.set_if_absent("lease", "owner-b", ttl=backend.long_ttl) is True
    assert store.get("lease") == "owner-b"


def test_set_if_absent_is_allowed_again_after_delete(store: Any) -> None:
    """A released lock can be taken again."""
    assert store.set_if_absent("lock", "owner-a") is True
    store.delete("lock")
    assert store.set_if_absent("lock", "owner-b") is True
    assert store.get("lock") == "owner-b"


# --- delete / delete_if_equals -----------------------------------------------------------------


def test_delete_removes_the_key(store: Any) -> None:
    """After delete the key reads as missing."""
    store.set("k", "v")
    store.delete("k")
    assert store.get("k") is None


def test_delete_of_a_missing_key_is_harmless(store: Any) -> None:
    """Deleting a key that does not exist neither fails nor creates it."""
    store.delete("never-written")
    assert store.get("never-written") is None


def test_delete_if_equals_releases_only_the_owners_lock(store: Any) -> None:
    """A lock is released only by the value that holds it; anyone else is refused."""
    assert store.set_if_absent("lock", "owner-a") is True
    assert store.delete_if_equals("lock", "owner-b") is False
    assert store.get("lock") == "owner-a"
    assert store.delete_if_equals("lock", "owner-a") is True
    assert store.get("lock") is None


def test_delete_if_equals_on_a_missing_key_returns_false(store: Any) -> None:
    """There is nothing to release when the key is missing."""
    assert store.delete_if_equals("never-written", "anything") is False
    assert store.get("never-written") is None


# --- incr --------------------------------------------------------------------------------------


def test_incr_starts_at_amount_and_returns_the_new_value(store: Any) -> None:
    """A new counter starts at the amount; each incr returns the running total as an int."""
    assert store.incr("hits") == 1
    assert store.incr("hits") == 2
    assert store.incr("hits", 5) == 7
    assert store.incr("other", 5) == 5
    assert store.get("hits") == "7"


def test_incr_accepts_negative_amounts(store: Any) -> None:
    """Negative amounts count down, through zero and below."""
    assert store.incr("gauge", -3) == -3
    assert store.incr("gauge", 10) == 7
    assert store.incr("gauge", -7) == 0
    assert store.incr("gauge", -1) == -1
    assert store.get("gauge") == "-1"


def test_incr_counts_on_from_a_value_written_by_set(store: Any) -> None:
    """incr continues from a numeric string stored with set."""
    store.set("hits", "41")
    assert store.incr("hits") == 42


def test_incr_gives_a_new_key_its_ttl(backend: Backend, store: Any) -> None:
    """A counter created with a TTL disappears once the TTL has run out, then restarts."""
    assert store.incr("window", ttl=backend.short_ttl) == 1
    assert backend.wait_until_gone(store, "window", backend.short_ttl)
    assert store.incr("window") == 1


def test_later_incr_does_not_extend_the_ttl(backend: Backend, store: Any) -> None:
    """Only the incr that creates the key sets its TTL; later ones (with or without ttl) leave it."""
    assert store.incr("window", ttl=backend.short_ttl) == 1
    backend.let_time_pass(backend.short_ttl / 2)
    assert store.incr("window", ttl=backend.long_ttl) == 2
    assert store.incr("window") == 3
    assert backend.wait_until_gone(store, "window", backend.short_ttl / 2)


def test_incr_back_to_the_amount_does_not_extend_the_ttl(backend: Backend, store: Any) -> None:
    """A counter that returns to zero and is incremented again keeps its original TTL."""
    assert store.incr("in-flight", 1, ttl=backend.short_ttl) == 1
    assert store.incr("in-flight", -1) == 0
    assert store.incr("in-flight", 1, ttl=backend.long_ttl) == 1
    assert backend.wait_until_gone(store, "in-flight", backend.short_ttl)


def test_incr_does_not_give_a_ttl_to_an_existing_permanent_key(backend: Backend, store: Any) -> None:
    """incr with a ttl on a key that already exists without one leaves it permanent."""
    store.set("total", "0")
    assert store.incr("total", 1, ttl=backend.short_ttl) == 1
    backend.let_time_pass(backend.short_ttl * 2)
    assert store.get("total") == "1"


# --- expire ------------------------------------------------------------------------------------


def test_expire_resets_the_ttl_for_sliding_timeouts(backend: Backend, store: Any) -> None:
    """expire replaces the remaining TTL: it can lengthen it past the original and shorten it again."""
    store.set("session", "v", ttl=backend.short_ttl)
    assert store.expire("session", backend.long_ttl) is True
    backend.let_time_pass(backend.short_ttl * 2)
    assert store.get("session") == "v"
    assert store.expire("session", backend.short_ttl) is True
    assert backend.wait_until_gone(store, "session", backend.short_ttl)


def test_expire_gives_a_permanent_key_a_ttl(backend: Backend, store: Any) -> None:
    """expire on a key without a TTL makes it expire."""
    store.set("k", "v")
    assert store.expire("k", backend.short_ttl) is True
    assert backend.wait_until_gone(store, "k", backend.short_ttl)


def test_expire_on_a_missing_key_returns_false(store: Any) -> None:
    """expire on a missing key reports False and does not create it."""
    assert store.expire("never-written", 60) is False
    assert store.get("never-written") is None


def test_expire_on_an_expired_key_returns_false(backend: Backend, store: Any) -> None:
    """A key whose TTL ran out cannot be revived by expire."""
    store.set("k", "v", ttl=backend.short_ttl)
    assert backend.wait_until_gone(store, "k", backend.short_ttl)
    assert store.expire("k", backend.long_ttl) is False
    assert store.get("k") is None


# --- prefixes ----------------------------------------------------------------------------------


def test_prefixes_isolate_two_stores_on_the_same_backend(backend: Backend) -> None:
    """Two stores with different prefixes never see each other's keys."""
    first, second = backend.make_store(), backend.make_store()
    first.set("k", "first")
    assert second.get("k") is None
    assert second.set_if_absent("k", "second") is True
    assert first.get("k") == "first"
    assert first.incr("n", 2) == 2
    assert second.incr("n", 5) == 5
    second.delete("k")
    assert first.get("k") == "first"
    assert first.delete_if_equals("k", "second") is False
    assert first.expire("only-in-second", 60) is False


def test_redis_stores_sharing_a_prefix_share_keys() -> None:
    """Redis: two store objects (as in two processes) with one prefix see one key space."""
    prefix = unique_prefix()
    first, second = RedisStateStore(REDIS_TEST_URL, prefix=prefix), RedisStateStore(REDIS_TEST_URL, prefix=prefix)
    try:
        first.set("k", "v")
        assert second.get("k") == "v"
        assert second.incr("n") == 1
        assert first.incr("n") == 2
    finally:
        delete_redis_keys(prefix)


# --- atomicity ---------------------------------------------------------------------------------


def test_incr_is_exact_under_concurrent_threads(store: Any) -> None:
    """16 threads x 500 increments on one key lose nothing."""
    run_in_threads(THREADS, lambda _: [store.incr("shared") for _ in range(INCRS_PER_THREAD)])
    assert store.get("shared") == str(THREADS * INCRS_PER_THREAD)


def test_concurrent_incr_returns_every_value_exactly_once(store: Any) -> None:
    """The values handed back by concurrent incr calls are exactly 1..N, each once."""
    per_thread = run_in_threads(THREADS, lambda _: [store.incr("ticket") for _ in range(100)])
    handed_out = sorted(value for values in per_thread for value in values)
    assert handed_out == list(range(1, THREADS * 100 + 1))


def test_set_if_absent_has_exactly_one_winner_among_threads(store: Any) -> None:
    """16 threads race set_if_absent on the same 300 keys: each key has exactly one winner, whose value is stored."""
    keys = [f"lock-{n}" for n in range(300)]
    won = run_in_threads(THREADS, lambda i: [store.set_if_absent(key, f"owner-{i}", ttl=60) for key in keys])
    for position, key in enumerate(keys):
        winners = [i for i in range(THREADS) if won[i][position]]
        assert len(winners) == 1, (key, winners)
        assert store.get(key) == f"owner-{winners[0]}"


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from gateway_project.state.redis_store import RedisStateStore

    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = RedisStateStore(url, prefix=prefix)
    store.incr("started")
    deadline = time.monotonic() + 30
    while int(store.get("started") or 0) < 2:  # start together so the increments interleave
        if time.monotonic() > deadline:
            sys.exit("the other worker never started")
        time.sleep(0.005)
    for _ in range(count):
        store.incr("shared", ttl=600)
    """
)


def test_redis_incr_is_exact_across_processes() -> None:
    """Two OS processes incrementing one Redis key N times each give exactly 2N."""
    prefix, count = unique_prefix(), 2_000
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, REDIS_TEST_URL, prefix, str(count)],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr
        assert RedisStateStore(REDIS_TEST_URL, prefix=prefix).get("shared") == str(2 * count)
    finally:
        delete_redis_keys(prefix)


# --- unavailability ----------------------------------------------------------------------------

OPERATIONS: dict[str, Callable[[Any], Any]] = {
    "ping": lambda s: s.ping(),
    "get": lambda s: s.get("k"),
    "set": lambda s: s.set("k", "v", ttl=5),
    "set_if_absent": lambda s: s.set_if_absent("k", "v"),
    "delete": lambda s: s.delete("k"),
    "delete_if_equals": lambda s: s.delete_if_equals("k", "v"),
    "incr": lambda s: s.incr("k", ttl=5),
    "expire": lambda s: s.expire("k", 5),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_unreachable_redis_raises_state_store_unavailable_quickly(operation: str) -> None:
    """Every operation against a closed port fails fast with StateStoreUnavailable, not a redis error."""
    store = RedisStateStore(CLOSED_REDIS_URL, prefix=unique_prefix())
    started = time.monotonic()
    with pytest.raises(StateStoreUnavailable) as raised:
        OPERATIONS[operation](store)
    assert time.monotonic() - started < 1.0
    assert type(raised.value) is StateStoreUnavailable
    assert not isinstance(raised.value, redis.RedisError)
    assert isinstance(raised.value.__cause__, redis.ConnectionError)


def test_memory_store_ping_always_answers() -> None:
    """The in-process store is always available."""
    assert MemoryStateStore(prefix=unique_prefix()).ping() is None


def test_redis_store_ping_answers_when_redis_is_up() -> None:
    """ping on a reachable Redis returns without raising."""
    assert RedisStateStore(REDIS_TEST_URL, prefix=unique_prefix()).ping() is None


# --- choosing the backend ----------------------------------------------------------------------


def test_get_state_store_is_memory_without_redis_url() -> None:
    """An empty REDIS_URL gives the in-process backend."""
    with redis_url_setting(""):
        store = get_state_store()
        assert isinstance(store, MemoryStateStore)
        assert store.backend_name == "memory"


def test_get_state_store_is_redis_with_redis_url(redis_client: redis.Redis) -> None:
    """A REDIS_URL gives the Redis backend, keyed under GATEWAY_STATE_PREFIX."""
    with redis_url_setting(REDIS_TEST_URL):
        store = get_state_store()
        assert isinstance(store, RedisStateStore)
        assert store.backend_name == "redis"
        prefix = settings.GATEWAY_STATE_PREFIX
        try:
            store.set("probe", "v")
            assert redis_client.get(prefix + "probe") == "v"
        finally:
            delete_redis_keys(prefix)


@pytest.mark.parametrize("url", ["", REDIS_TEST_URL], ids=["memory", "redis"])
def test_get_state_store_builds_one_store_until_reset(url: str) -> None:
    """The process-wide store is built once and shared; reset_state_store makes the next call rebuild."""
    with redis_url_setting(url):
        first = get_state_store()
        assert get_state_store() is first
        reset_state_store()
        assert get_state_store() is not first
