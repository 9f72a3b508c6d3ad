"""Each process's gauges: flushed with its counts, listed while fresh, gone once it stops."""

from __future__ import annotations

import os

from monitoring.flush import GAUGE_TTL_INTERVALS, flush_metrics
from monitoring.process import CpuMeter, process_name, resident_memory_bytes
from monitoring.queries import process_gauges
from performance.capacity import in_flight
from tests.monitoring.conftest import INTERVAL, T0


def test_a_flush_publishes_this_process_memory_cpu_and_in_flight_exchanges() -> None:
    in_flight.enter()
    try:
        assert flush_metrics(now=T0)
    finally:
        in_flight.leave()
    [gauges] = process_gauges(now=T0 + 1)
    assert (gauges.process, gauges.pid, gauges.at) == (process_name(), os.getpid(), T0)
    assert gauges.in_flight == 1
    assert gauges.rss_bytes > 10 * 1024 * 1024  # a Django process is tens of MiB at least
    assert gauges.cpu_percent >= 0.0


def test_a_process_that_stopped_flushing_drops_out_after_three_intervals() -> None:
    assert flush_metrics(now=T0)
    assert len(process_gauges(now=T0 + GAUGE_TTL_INTERVALS * INTERVAL)) == 1
    assert process_gauges(now=T0 + GAUGE_TTL_INTERVALS * INTERVAL + 1) == []


def test_cpu_percent_is_cpu_time_over_wall_time_between_samples() -> None:
    wall, cpu = [100.0], [5.0]
    meter = CpuMeter(clock=lambda: wall[0], cpu=lambda: cpu[0])
    wall[0], cpu[0] = 110.0, 10.0  # 5 CPU seconds in 10 wall seconds
    assert meter.percent_since_last() == 50.0
    wall[0], cpu[0] = 111.0, 12.0  # two busy threads for a second
    assert meter.percent_since_last() == 200.0
    assert meter.percent_since_last() == 0.0  # no wall time passed: nothing to divide by


def test_resident_memory_matches_the_kernels_view() -> None:
    with open("/proc/self/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert abs(resident_memory_bytes() - rss_kib * 1024) < 16 * 1024 * 1024
