"""Request tallies: counts, errors and a fixed latency histogram that merge exactly.

Every process counts its own exchanges; the store adds the processes' counts together. Averages
and error rates merge by adding sums and counts. Percentiles do not merge (the p95 of two
processes is not the mean of their p95s), so each tally keeps a histogram over **fixed**
bucket bounds shared by every process: adding two histograms bucket by bucket gives exactly the
histogram of all their requests, and a percentile read from it is as good as one read from a
single process that saw everything.

The bounds are 2^(i/4) ms for i = 0..64: from 1 ms to 65.5 s, each bucket 19% wider than the
one below, so a percentile is known to within that (it is interpolated inside its bucket, as
Prometheus' ``histogram_quantile`` does). Every fourth bound is a power of two, and /metrics
exposes just those (1 ms, 2 ms, ... 65.536 s), which cumulative Prometheus buckets allow
exactly. A last bucket takes anything slower (long event streams).

    >>> tally = Tally()
    >>> for latency_ms in (3.0, 5.0, 40.0):
    ...     tally.add(latency_ms, is_error=False)
    >>> tally.count, round(tally.average_ms, 1)
    (3, 16.0)
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

STEPS_PER_DOUBLING = 4
# Bucket i holds latencies in (BOUNDS_MS[i-1], BOUNDS_MS[i]]; bucket 0 everything up to 1 ms.
BOUNDS_MS: tuple[float, ...] = tuple(2 ** (step / STEPS_PER_DOUBLING) for step in range(16 * STEPS_PER_DOUBLING + 1))
# One more bucket for latencies above the last bound.
BUCKET_COUNT = len(BOUNDS_MS) + 1
OVERFLOW_BUCKET = BUCKET_COUNT - 1
# The bounds /metrics shows: the powers of two (every STEPS_PER_DOUBLING-th bound).
PROMETHEUS_BOUND_INDEXES: tuple[int, ...] = tuple(range(0, len(BOUNDS_MS), STEPS_PER_DOUBLING))


def bucket_index(latency_ms: float) -> int:
    """The bucket of a latency: the first bound at or above it, else the overflow bucket."""
    return bisect_left(BOUNDS_MS, latency_ms)


def _empty_buckets() -> list[int]:
    return [0] * BUCKET_COUNT


@dataclass(slots=True)
class Tally:
    """Exchanges counted for one key (a route, a target, ...) over some stretch of time."""

    count: int = 0
    errors: int = 0
    # Integer microseconds, so sums add up exactly in the store (which counts in integers).
    latency_sum_us: int = 0
    buckets: list[int] = field(default_factory=_empty_buckets)

    def add(self, latency_ms: float, *, is_error: bool) -> None:
        self.add_measured(bucket_index(latency_ms), round(latency_ms * 1000), is_error=is_error)

    def add_measured(self, bucket: int, latency_us: int, *, is_error: bool) -> None:
        """``add`` with the bucket and microseconds worked out once for several tallies."""
        self.count += 1
        self.errors += is_error
        self.latency_sum_us += latency_us
        self.buckets[bucket] += 1

    def merge(self, other: Tally) -> None:
        """Add ``other``'s exchanges to this tally (exact, whatever process counted them)."""
        self.count += other.count
        self.errors += other.errors
        self.latency_sum_us += other.latency_sum_us
        for index, value in enumerate(other.buckets):
            self.buckets[index] += value

    @property
    def average_ms(self) -> float:
        return self.latency_sum_us / 1000 / self.count if self.count else 0.0

    @property
    def error_rate(self) -> float:
        """Errors as a fraction of all exchanges (0.0 to 1.0; 0.0 without exchanges)."""
        return self.errors / self.count if self.count else 0.0

    def quantile_ms(self, quantile: float) -> float | None:
        """The latency below which ``quantile`` (0..1) of the exchanges fall; None when empty.

        Linear inside the bucket that holds the rank, like Prometheus' ``histogram_quantile``;
        a rank in the overflow bucket answers the last bound (nothing more is known).
        """
        if self.count == 0:
            return None
        rank = quantile * self.count
        below = 0
        for index, in_bucket in enumerate(self.buckets):
            if in_bucket and below + in_bucket >= rank:
                if index == OVERFLOW_BUCKET:
                    return BOUNDS_MS[-1]
                lower = BOUNDS_MS[index - 1] if index else 0.0
                upper = BOUNDS_MS[index]
                return lower + (upper - lower) * max(0.0, rank - below) / in_bucket
            below += in_bucket
        return BOUNDS_MS[-1]  # unreachable while the buckets add up to the count

    def cumulative_at(self, bound_index: int) -> int:
        """Exchanges at or below ``BOUNDS_MS[bound_index]`` (a Prometheus ``le`` bucket)."""
        return sum(self.buckets[: bound_index + 1])
