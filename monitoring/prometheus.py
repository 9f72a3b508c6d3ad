"""The Prometheus exposition of the gateway's metrics, aggregated over every process.

prometheus_client's multi-process mode shares files between the workers of one machine; the
gateway's processes may run on many machines and already meet in the metrics store. So a
custom collector reads the aggregated totals there at each scrape, into a private registry
(the global one would add this one process's own collectors, which describe no deployment).
Whichever process answers a scrape, the numbers are the same: the sums every process flushed,
at most one flush interval behind.

    gateway_requests_total{dimension,key}            exchanges finished
    gateway_request_errors_total{dimension,key}      of which errors (5xx, streams cut short)
    gateway_request_duration_seconds{dimension,key}  histogram, buckets 1 ms .. 65.536 s
    gateway_process_resident_memory_bytes{process}   per live gateway process ("host:pid")
    gateway_process_cpu_percent{process}             CPU over the last interval (100 = a core)
    gateway_in_flight_requests{process}              exchanges being served

``dimension`` is gateway (key "all"), route, target, api_key or tool (see ``recorder.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from monitoring.histogram import BOUNDS_MS, PROMETHEUS_BOUND_INDEXES, Tally
from monitoring.queries import process_gauges, totals

KEY_LABELS = ["dimension", "key"]
PROCESS_LABELS = ["process"]


def histogram_buckets(tally: Tally) -> list[tuple[str, float]]:
    """Cumulative ``le`` buckets in seconds at the powers of two, then ``+Inf``."""
    buckets = [
        (floatToGoString(BOUNDS_MS[index] / 1000), float(tally.cumulative_at(index)))
        for index in PROMETHEUS_BOUND_INDEXES
    ]
    buckets.append(("+Inf", float(tally.count)))
    return buckets


class GatewayMetricsCollector(Collector):
    """Reads the store at every scrape (two round trips: the totals, the gauges)."""

    def collect(self) -> Iterable[Metric]:
        yield from self._exchange_metrics()
        yield from self._process_metrics()

    def _exchange_metrics(self) -> list[Metric]:
        requests = CounterMetricFamily(
            "gateway_requests", "Exchanges finished, per dimension and key.", labels=KEY_LABELS
        )
        errors = CounterMetricFamily(
            "gateway_request_errors",
            "Exchanges that ended in an error (5xx, or a stream cut short).",
            labels=KEY_LABELS,
        )
        durations = HistogramMetricFamily(
            "gateway_request_duration_seconds", "Time from request to the end of the answer.", labels=KEY_LABELS
        )
        for dimension, tallies in totals().items():
            for key, tally in tallies.items():
                labels = [dimension, key]
                requests.add_metric(labels, tally.count)
                errors.add_metric(labels, tally.errors)
                durations.add_metric(labels, histogram_buckets(tally), sum_value=tally.latency_sum_us / 1_000_000)
        return [requests, errors, durations]

    def _process_metrics(self) -> list[Metric]:
        memory = GaugeMetricFamily(
            "gateway_process_resident_memory_bytes", "Resident memory of each gateway process.", labels=PROCESS_LABELS
        )
        cpu = GaugeMetricFamily(
            "gateway_process_cpu_percent",
            "CPU use of each gateway process over its last interval.",
            labels=PROCESS_LABELS,
        )
        in_flight = GaugeMetricFamily(
            "gateway_in_flight_requests", "Exchanges each gateway process is serving.", labels=PROCESS_LABELS
        )
        for gauges in process_gauges():
            memory.add_metric([gauges.process], gauges.rss_bytes)
            cpu.add_metric([gauges.process], gauges.cpu_percent)
            in_flight.add_metric([gauges.process], gauges.in_flight)
        return [memory, cpu, in_flight]


def render_metrics(accept: str = "") -> tuple[bytes, str]:
    """The exposition body and its content type, in the format ``accept`` asks for (the
    Prometheus text format unless OpenMetrics is asked for)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayMetricsCollector())
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
