"""The per-process flusher: started by the first recorded exchange, flushing just after each
interval boundary, never started when background flushing is off."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.test import override_settings

from monitoring.flush import WAKE_AFTER_BOUNDARY, MetricsFlusher, stop_flusher
from monitoring.queries import totals
from tests.monitoring.conftest import T0
from tests.upstream_server import UpstreamServer

FLUSHER_THREAD = "metrics-flusher"


def flusher_running() -> bool:
    return any(thread.name == FLUSHER_THREAD and thread.is_alive() for thread in threading.enumerate())


def test_the_first_exchange_starts_a_flusher_that_ships_the_counts(
    client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/api", upstream.url, name="api")
    with override_settings(GATEWAY_METRICS_BACKGROUND_FLUSH=True, GATEWAY_METRICS_INTERVAL_SECONDS=1):
        try:
            assert not flusher_running()
            assert client.get("/api/echo").status_code == 200
            assert flusher_running()
            client.get("/api/echo")
            deadline = time.monotonic() + 5
            while "api" not in totals()["route"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert totals()["route"]["api"].count == 2
        finally:
            stop_flusher()
    assert not flusher_running()


def test_no_flusher_starts_while_background_flushing_is_off(
    client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/api", upstream.url, name="api")
    client.get("/api/echo")
    assert not flusher_running()


def test_the_flusher_wakes_just_after_each_interval_boundary() -> None:
    flusher = MetricsFlusher(10)
    earliest, latest = (10 * share for share in WAKE_AFTER_BOUNDARY)
    assert 7 + earliest <= flusher.seconds_to_next_flush(T0 + 3) <= 7 + latest
    assert 10 + earliest <= flusher.seconds_to_next_flush(T0) <= 10 + latest
