"""The latency histogram: fixed bounds, percentiles within a bucket's width, exact merging."""

from __future__ import annotations

import random

import pytest

from monitoring.histogram import BOUNDS_MS, BUCKET_COUNT, OVERFLOW_BUCKET, PROMETHEUS_BOUND_INDEXES, Tally, bucket_index

BUCKET_WIDTH = 2 ** (1 / 4)  # each bound is this factor above the one below


@pytest.mark.parametrize(
    ("latency_ms", "bucket"),
    [
        (0.0, 0),
        (0.4, 0),
        (1.0, 0),  # a bound belongs to the bucket it closes (Prometheus' "le")
        (1.0001, 1),
        (2.0, 4),
        (2.01, 5),
        (1024.0, 40),
        (65_536.0, 64),
        (65_536.1, OVERFLOW_BUCKET),
        (3_600_000.0, OVERFLOW_BUCKET),
    ],
)
def test_a_latency_falls_in_the_bucket_its_bound_closes(latency_ms: float, bucket: int) -> None:
    assert bucket_index(latency_ms) == bucket


def test_the_bounds_run_from_one_millisecond_past_a_minute_and_prometheus_gets_the_powers_of_two() -> None:
    assert BOUNDS_MS[0] == 1.0 and BOUNDS_MS[-1] == 65_536.0
    assert BUCKET_COUNT == len(BOUNDS_MS) + 1
    assert [BOUNDS_MS[index] for index in PROMETHEUS_BOUND_INDEXES] == [2.0**power for power in range(17)]


def test_count_errors_and_average_are_exact() -> None:
    tally = Tally()
    for latency_ms, failed in [(10.0, False), (20.0, True), (30.5, False), (40.0, True)]:
        tally.add(latency_ms, is_error=failed)
    assert (tally.count, tally.errors) == (4, 2)
    assert tally.average_ms == pytest.approx(25.125)
    assert tally.error_rate == 0.5


@pytest.mark.parametrize(("quantile", "exact_ms"), [(0.50, 500.0), (0.95, 950.0), (0.99, 990.0)])
def test_percentiles_are_within_one_bucket_of_the_truth(quantile: float, exact_ms: float) -> None:
    tally = Tally()
    for latency_ms in range(1, 1001):
        tally.add(float(latency_ms), is_error=False)
    estimate = tally.quantile_ms(quantile)
    assert estimate is not None
    assert exact_ms / BUCKET_WIDTH <= estimate <= exact_ms * BUCKET_WIDTH


def test_all_requests_in_one_bucket_give_percentiles_inside_that_bucket() -> None:
    tally = Tally()
    for _ in range(100):
        tally.add(100.0, is_error=False)
    index = bucket_index(100.0)
    for quantile in (0.5, 0.95, 0.99):
        estimate = tally.quantile_ms(quantile)
        assert estimate is not None and BOUNDS_MS[index - 1] <= estimate <= BOUNDS_MS[index]


def test_latencies_past_the_last_bound_report_the_last_bound() -> None:
    tally = Tally()
    tally.add(5.0, is_error=False)
    for _ in range(9):
        tally.add(120_000.0, is_error=False)
    assert tally.quantile_ms(0.99) == BOUNDS_MS[-1]


def test_an_empty_tally_has_no_percentiles_and_no_rates() -> None:
    tally = Tally()
    assert tally.quantile_ms(0.95) is None
    assert (tally.average_ms, tally.error_rate) == (0.0, 0.0)


def test_merging_two_tallies_equals_one_tally_that_saw_everything() -> None:
    rng = random.Random(7)
    samples = [(rng.lognormvariate(3, 1.5), rng.random() < 0.1) for _ in range(5000)]
    whole, first, second = Tally(), Tally(), Tally()
    for number, (latency_ms, failed) in enumerate(samples):
        whole.add(latency_ms, is_error=failed)
        (first if number % 3 else second).add(latency_ms, is_error=failed)
    first.merge(second)
    assert first == whole
    assert first.quantile_ms(0.99) == whole.quantile_ms(0.99)


def test_cumulative_buckets_count_everything_at_or_below_a_bound() -> None:
    tally = Tally()
    for latency_ms in (0.5, 1.0, 1.5, 3.0, 100_000.0):
        tally.add(latency_ms, is_error=False)
    assert tally.cumulative_at(0) == 2  # <= 1 ms
    assert tally.cumulative_at(4) == 3  # <= 2 ms
    assert tally.cumulative_at(len(BOUNDS_MS) - 1) == 4  # the overflow is only in +Inf
