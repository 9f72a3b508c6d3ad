"""Token bucket and sliding window on both backends: memory and real Redis, on a fake clock.

The Redis limiter takes the injected clock in place of the server's TIME, so the same Lua
scripts that serve production run here without a test ever sleeping.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from security.ratelimit_algorithms import Decision, Limit, MemoryRateLimiter, RedisRateLimiter
from tests.gateway_project.conftest import REDIS_TEST_URL, FakeClock, delete_redis_keys, unique_prefix

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)  # an epoch-like time, as Redis TIME would be


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryRateLimiter(clock=clock)
        return
    prefix = unique_prefix()
    redis_limiter = RedisRateLimiter(REDIS_TEST_URL, prefix=prefix, clock=clock)
    yield redis_limiter
    redis_limiter.close()
    delete_redis_keys(prefix)


def hits_at(limiter: Any, clock: FakeClock, limit: Limit, offsets: list[float], key: str = "k") -> list[bool]:
    start = clock.now
    verdicts = []
    for offset in offsets:
        clock.now = start + offset
        verdicts.append(limiter.hit(key, limit).allowed)
    return verdicts


def test_sliding_window_is_exact_at_the_window_edges(limiter: Any, clock: FakeClock) -> None:
    three_per_ten = Limit.sliding_window(limit=3, window_seconds=10)
    assert hits_at(limiter, clock, three_per_ten, [0, 1, 2, 9.9, 10.01, 10.5, 11.01]) == [
        True, True, True, False, True, False, True,
    ]


def test_sliding_window_counts_across_any_window_not_fixed_buckets(limiter: Any, clock: FakeClock) -> None:
    # A fixed-bucket counter would admit 3 at t=9 and 3 more at t=10.5 (a new bucket).
    three_per_ten = Limit.sliding_window(limit=3, window_seconds=10)
    assert hits_at(limiter, clock, three_per_ten, [9, 9, 9, 10.5, 18.9, 19.01]) == [True, True, True, False, False, True]


def test_sliding_window_decision_reports_remaining_reset_and_retry_after(limiter: Any, clock: FakeClock) -> None:
    three_per_ten = Limit.sliding_window(limit=3, window_seconds=10)
    first = limiter.hit("k", three_per_ten)
    assert (first.allowed, first.limit, first.remaining, first.reset, first.retry_after) == (True, 3, 2, 10.0, 0.0)
    clock.advance(4)
    limiter.hit("k", three_per_ten)
    limiter.hit("k", three_per_ten)
    denied = limiter.hit("k", three_per_ten)
    assert (denied.allowed, denied.remaining) == (False, 0)
    assert denied.retry_after == pytest.approx(6.0) and denied.reset == pytest.approx(6.0)
    assert (denied.retry_after_header, denied.reset_header) == (6, 6)


def test_denied_requests_do_not_use_up_the_window(limiter: Any, clock: FakeClock) -> None:
    one_per_ten = Limit.sliding_window(limit=1, window_seconds=10)
    assert hits_at(limiter, clock, one_per_ten, [0, 5, 9, 10.0]) == [True, False, False, True]


def test_token_bucket_allows_its_burst_then_refills_at_its_rate(limiter: Any, clock: FakeClock) -> None:
    two_per_second_burst_five = Limit.token_bucket(rate_per_second=2, burst=5)
    assert hits_at(limiter, clock, two_per_second_burst_five, [0, 0, 0, 0, 0, 0]) == [True] * 5 + [False]
    # 0.5 s later exactly one token is back (2/s), not two.
    assert hits_at(limiter, clock, two_per_second_burst_five, [0.5, 0.5]) == [True, False]
    # Ten quiet seconds refill to the burst, never beyond it.
    assert hits_at(limiter, clock, two_per_second_burst_five, [10.5] * 6) == [True] * 5 + [False]


def test_token_bucket_decision_reports_remaining_reset_and_retry_after(limiter: Any, clock: FakeClock) -> None:
    one_per_two_seconds_burst_two = Limit.token_bucket(rate_per_second=0.5, burst=2)
    first: Decision = limiter.hit("k", one_per_two_seconds_burst_two)
    assert (first.allowed, first.limit, first.remaining) == (True, 2, 1)
    assert first.reset == pytest.approx(2.0)  # one token short of full, at 0.5/s
    limiter.hit("k", one_per_two_seconds_burst_two)
    clock.advance(0.5)
    denied = limiter.hit("k", one_per_two_seconds_burst_two)
    assert (denied.allowed, denied.remaining) == (False, 0)
    assert denied.retry_after == pytest.approx(1.5)  # 0.25 token back, 0.75 to go at 0.5/s
    assert denied.retry_after_header == 2 and denied.reset_header == 4


def test_keys_are_independent(limiter: Any, clock: FakeClock) -> None:
    one_per_ten = Limit.sliding_window(limit=1, window_seconds=10)
    assert [limiter.hit(key, one_per_ten).allowed for key in ("a", "b", "a")] == [True, True, False]


def test_a_lowered_limit_applies_at_once(limiter: Any, clock: FakeClock) -> None:
    assert hits_at(limiter, clock, Limit.sliding_window(5, 10), [0, 1, 2, 3]) == [True] * 4
    lowered = Limit.sliding_window(2, 10)
    denied = limiter.hit("k", lowered)
    assert not denied.allowed
    # Below 2 means three of the four logged requests (t=0, 1, 2) must leave: at t=12.
    assert denied.retry_after == pytest.approx(12 - 3)


HAMMER = textwrap.dedent(
    """
    import sys, time
    from security.ratelimit_algorithms import Limit, RedisRateLimiter
    url, prefix, algorithm, hits, start_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    limit = Limit.sliding_window(50, 60) if algorithm == "sliding_window" else Limit.token_bucket(0.0001, 50)
    limiter = RedisRateLimiter(url, prefix=prefix)  # the server's TIME: no injected clock
    limiter.hit("warm-up", limit)
    while time.time() < start_at:
        time.sleep(0.001)
    print(sum(limiter.hit("shared", limit).allowed for _ in range(hits)))
    """
)


@pytest.mark.parametrize("algorithm", ["sliding_window", "token_bucket"])
def test_processes_hammering_one_key_admit_exactly_the_limit(algorithm: str) -> None:
    prefix = unique_prefix()
    start_at = time.time() + 2.0  # every process starts hitting at the same moment
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, REDIS_TEST_URL, prefix, algorithm, "40", str(start_at)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        admitted = [int(process.communicate(timeout=60)[0]) for process in processes]
    finally:
        delete_redis_keys(prefix)
    assert sum(admitted) == 50  # 160 requests, limit 50
    assert sum(1 for count in admitted if count > 0) >= 2  # really concurrent, not one after another
