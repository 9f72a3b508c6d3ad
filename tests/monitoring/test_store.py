"""The metrics store contract, on memory (fake clock) and on real Redis: additions from several
processes add up, hashes and gauge entries expire, dead processes drop out."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from gateway_project.state import StateStoreUnavailable
from monitoring.store import CounterAdd, GaugeSet, RedisMetricsStore
from tests.gateway_project.conftest import (
    CLOSED_REDIS_URL,
    EXPIRY_DEADLINE_SECONDS,
    REDIS_TEST_URL,
    Backend,
    delete_redis_keys,
    unique_prefix,
)

LONG = 3_600.0


def wait_until(backend: Backend, seconds: float, condition: Any) -> bool:
    """Let ``seconds`` pass (fake clock, or real time polled on Redis); True once ``condition()``."""
    if backend.name == "memory":
        backend.clock.advance(seconds)
        return bool(condition())
    deadline = time.monotonic() + seconds + EXPIRY_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_additions_from_several_writers_add_up(metrics_store: Any) -> None:
    metrics_store.write([CounterAdd("total:route", {"api|count": 3, "api|b5": 2}, LONG)])
    metrics_store.write([CounterAdd("total:route", {"api|count": 4, "web|count": 1}, LONG)])
    assert metrics_store.read_counters(["total:route"]) == [{"api|count": 7, "api|b5": 2, "web|count": 1}]


def test_reading_chosen_fields_leaves_the_others_and_the_missing_out(metrics_store: Any) -> None:
    metrics_store.write(
        [
            CounterAdd("window:10:route", {"api|count": 2, "web|count": 5}, LONG),
            CounterAdd("window:20:route", {"web|count": 1}, LONG),
        ]
    )
    replies = metrics_store.read_counters(
        ["window:10:route", "window:20:route", "window:30:route"], fields=["api|count", "api|errors"]
    )
    assert replies == [{"api|count": 2}, {}, {}]


def test_a_hash_expires_after_its_time_to_live(metrics_store: Any, backend: Backend) -> None:
    metrics_store.write([CounterAdd("window:10:route", {"api|count": 1}, backend.short_ttl)])
    assert metrics_store.read_counters(["window:10:route"]) == [{"api|count": 1}]
    assert wait_until(backend, backend.short_ttl, lambda: metrics_store.read_counters(["window:10:route"]) == [{}])


def test_a_write_renews_a_hashs_time_to_live(metrics_store: Any, backend: Backend) -> None:
    metrics_store.write([CounterAdd("total:route", {"api|count": 1}, backend.short_ttl)])
    metrics_store.write([CounterAdd("total:route", {"api|count": 1}, LONG)])
    backend.let_time_pass(backend.short_ttl * 2)
    assert metrics_store.read_counters(["total:route"]) == [{"api|count": 2}]


def test_each_process_keeps_one_gauge_entry_until_it_stops_flushing(metrics_store: Any, backend: Backend) -> None:
    metrics_store.write([], GaugeSet("host:1", '{"n": 1}', backend.short_ttl))
    metrics_store.write([], GaugeSet("host:2", '{"n": 2}', LONG))
    metrics_store.write([], GaugeSet("host:2", '{"n": 3}', LONG))
    assert metrics_store.read_gauges() == {"host:1": '{"n": 1}', "host:2": '{"n": 3}'}
    assert wait_until(backend, backend.short_ttl, lambda: metrics_store.read_gauges() == {"host:2": '{"n": 3}'})


def test_an_unreachable_redis_raises_state_store_unavailable() -> None:
    store = RedisMetricsStore(CLOSED_REDIS_URL, prefix="gwtest:closed:")
    with pytest.raises(StateStoreUnavailable):
        store.write([CounterAdd("total:route", {"api|count": 1}, LONG)])
    with pytest.raises(StateStoreUnavailable):
        store.read_counters(["total:route"])
    with pytest.raises(StateStoreUnavailable):
        store.read_gauges()


def test_redis_prunes_dead_processes_from_its_index() -> None:
    prefix = unique_prefix()
    store = RedisMetricsStore(REDIS_TEST_URL, prefix=prefix)
    redis_client = redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    try:
        store.write([], GaugeSet("host:1", "{}", 0.2))
        index = f"{prefix}metrics:procs"
        assert redis_client.smembers(index) == {"host:1"}
        deadline = time.monotonic() + 0.2 + EXPIRY_DEADLINE_SECONDS
        while store.read_gauges() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.read_gauges() == {}
        assert redis_client.smembers(index) == set()
    finally:
        store.close()
        redis_client.close()
        delete_redis_keys(prefix)
