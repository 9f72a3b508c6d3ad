"""The response-cache store contract, on both backends: memory on a fake clock, real Redis with
real short TTLs. LRU order, expiry, purge per route, cleanup, size, and Redis being down."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_project.state import StateStoreUnavailable
from performance import cache_store
from performance.cache_store import MemoryCacheStore, RedisCacheStore
from tests.gateway_project.conftest import CLOSED_REDIS_URL, REDIS_TEST_URL, Backend, unique_prefix

ROUTE = 7
OTHER_ROUTE = 8
LONG_TTL = 3_600.0


def make_store(backend: Backend, max_entries: int = 100, prefix: str | None = None) -> Any:
    """A cache store on the test's backend; Redis keys are removed at teardown."""
    if backend.name == "memory":
        return MemoryCacheStore(max_entries, clock=backend.clock)
    prefix = prefix or unique_prefix()
    backend.prefixes.append(prefix)
    return RedisCacheStore(REDIS_TEST_URL, prefix=prefix, max_entries=max_entries)


@pytest.fixture
def small_store(backend: Backend) -> Any:
    """Room for two entries."""
    return make_store(backend, max_entries=2)


def live_digests(store: Any, digests: list[str], route_id: int = ROUTE) -> list[str]:
    """Which of ``digests`` are still stored (reading them also marks them used)."""
    return [digest for digest in digests if store.get_first(route_id, [digest]) is not None]


def test_a_stored_answer_is_read_back_with_the_time_it_has_left(backend: Backend) -> None:
    store = make_store(backend)
    assert store.put(ROUTE, "a", '{"x": 1}', ttl=LONG_TTL) == 0
    found = store.get_first(ROUTE, ["a"])
    assert found is not None
    assert found.value == '{"x": 1}'
    assert LONG_TTL - 5 < found.ttl_left <= LONG_TTL


def test_get_first_returns_the_first_live_entry_in_the_order_asked(backend: Backend) -> None:
    store = make_store(backend)
    store.put(ROUTE, "shared", "for everyone", ttl=LONG_TTL)
    store.put(ROUTE, "mine", "for me", ttl=LONG_TTL)
    assert store.get_first(ROUTE, ["mine", "shared"]).value == "for me"
    assert store.get_first(ROUTE, ["missing", "shared"]).value == "for everyone"
    assert store.get_first(ROUTE, ["missing"]) is None


def test_an_entry_belongs_to_its_route_only(backend: Backend) -> None:
    store = make_store(backend)
    store.put(ROUTE, "a", "route seven", ttl=LONG_TTL)
    assert store.get_first(OTHER_ROUTE, ["a"]) is None


def test_replacing_an_entry_keeps_one_entry_and_evicts_nothing(backend: Backend) -> None:
    store = make_store(backend, max_entries=1)
    store.put(ROUTE, "a", "old", ttl=LONG_TTL)
    assert store.put(ROUTE, "a", "new", ttl=LONG_TTL) == 0
    assert store.get_first(ROUTE, ["a"]).value == "new"
    assert store.size() == 1


def test_beyond_the_maximum_the_least_recently_used_entry_is_evicted(small_store: Any) -> None:
    small_store.put(ROUTE, "first", "1", ttl=LONG_TTL)
    small_store.put(ROUTE, "second", "2", ttl=LONG_TTL)
    assert small_store.put(ROUTE, "third", "3", ttl=LONG_TTL) == 1
    assert live_digests(small_store, ["first", "second", "third"]) == ["second", "third"]
    assert small_store.size() == 2


def test_reading_an_entry_saves_it_from_eviction(small_store: Any) -> None:
    small_store.put(ROUTE, "first", "1", ttl=LONG_TTL)
    small_store.put(ROUTE, "second", "2", ttl=LONG_TTL)
    assert small_store.get_first(ROUTE, ["first"]) is not None  # now "second" is the least recent
    assert small_store.put(ROUTE, "third", "3", ttl=LONG_TTL) == 1
    assert live_digests(small_store, ["first", "second", "third"]) == ["first", "third"]


def test_an_entry_expires_after_its_ttl(backend: Backend) -> None:
    store = make_store(backend)
    store.put(ROUTE, "short", "soon gone", ttl=backend.short_ttl)
    store.put(ROUTE, "long", "stays", ttl=LONG_TTL)
    assert store.get_first(ROUTE, ["short"]) is not None
    backend.let_time_pass(backend.short_ttl + 0.05)
    assert store.get_first(ROUTE, ["short"]) is None
    assert store.get_first(ROUTE, ["short", "long"]).value == "stays"


def test_an_expired_entry_makes_room_without_counting_as_an_eviction(backend: Backend) -> None:
    store = make_store(backend, max_entries=1)
    store.put(ROUTE, "short", "soon gone", ttl=backend.short_ttl)
    backend.let_time_pass(backend.short_ttl + 0.05)
    assert store.put(ROUTE, "next", "here", ttl=LONG_TTL) == 0
    assert store.get_first(ROUTE, ["next"]).value == "here"


def test_purging_a_route_removes_its_entries_and_no_others(backend: Backend) -> None:
    store = make_store(backend)
    store.put(ROUTE, "a", "1", ttl=LONG_TTL)
    store.put(ROUTE, "b", "2", ttl=LONG_TTL)
    store.put(OTHER_ROUTE, "a", "other", ttl=LONG_TTL)
    assert store.purge_route(ROUTE) == 2
    assert live_digests(store, ["a", "b"]) == []
    assert store.get_first(OTHER_ROUTE, ["a"]).value == "other"
    assert store.purge_route(ROUTE) == 0
    assert store.size() == 1


def test_cleanup_removes_expired_entries_only_and_size_counts_live_ones(backend: Backend) -> None:
    store = make_store(backend)
    for digest in ("x", "y", "z"):
        store.put(ROUTE, digest, digest, ttl=backend.short_ttl)
    store.put(ROUTE, "kept", "kept", ttl=LONG_TTL)
    assert store.size() == 4
    backend.let_time_pass(backend.short_ttl + 0.05)
    assert store.size() == 1
    assert store.remove_expired() == 3
    assert store.remove_expired() == 0
    assert store.get_first(ROUTE, ["kept"]).value == "kept"


def test_cleanup_goes_on_until_every_expired_entry_is_gone(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis removes in bounded batches (one Lua call must not block Redis for long), and repeats."""
    monkeypatch.setattr(cache_store, "CLEANUP_BATCH", 2)
    store = make_store(backend)
    for number in range(5):
        store.put(ROUTE, f"d{number}", "x", ttl=backend.short_ttl)
    backend.let_time_pass(backend.short_ttl + 0.05)
    assert store.remove_expired() == 5
    assert store.size() == 0


def test_two_redis_stores_with_one_prefix_share_entries_and_their_lru_order() -> None:
    """What two gateway processes see: one cache, one use order."""
    backend = Backend("redis")
    try:
        prefix = unique_prefix()
        one = make_store(backend, max_entries=2, prefix=prefix)
        other = make_store(backend, max_entries=2, prefix=prefix)
        one.put(ROUTE, "first", "1", ttl=LONG_TTL)
        other.put(ROUTE, "second", "2", ttl=LONG_TTL)
        assert other.get_first(ROUTE, ["first"]).value == "1"  # used by the other process
        assert one.put(ROUTE, "third", "3", ttl=LONG_TTL) == 1
        assert live_digests(other, ["first", "second", "third"]) == ["first", "third"]
    finally:
        backend.cleanup()


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [
        ("get_first", (ROUTE, ["a"])),
        ("put", (ROUTE, "a", "value", LONG_TTL)),
        ("purge_route", (ROUTE,)),
        ("remove_expired", ()),
        ("size", ()),
    ],
)
def test_an_unreachable_redis_raises_state_store_unavailable(operation: str, arguments: tuple[Any, ...]) -> None:
    store = RedisCacheStore(CLOSED_REDIS_URL, prefix=unique_prefix(), max_entries=10)
    with pytest.raises(StateStoreUnavailable):
        getattr(store, operation)(*arguments)
