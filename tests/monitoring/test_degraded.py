"""Metrics never fail a request: an unreachable store delays the counts, it does not lose them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from gateway_project.exchange import Exchange
from monitoring.flush import flush_metrics
from monitoring.queries import snapshot
from monitoring.recorder import recorder
from monitoring.stages import record_metrics
from tests.gateway_project.conftest import CLOSED_REDIS_URL, redis_url_setting
from tests.monitoring.conftest import INTERVAL, T0
from tests.upstream_server import UpstreamServer


def test_requests_succeed_and_are_counted_while_the_state_store_is_down(
    client: Any, make_route: Any, upstream: UpstreamServer, state_store_down: None
) -> None:
    make_route("/api", upstream.url, name="api")
    assert [client.get("/api/echo").status_code for _ in range(3)] == [200, 200, 200]
    assert flush_metrics(now=T0 + 1) is False
    kept = recorder.drain()
    assert kept[("route", "api")].count == 3


def test_counts_kept_through_an_outage_go_out_with_the_next_flush(
    client: Any, make_route: Any, upstream: UpstreamServer
) -> None:
    make_route("/api", upstream.url, name="api")
    client.get("/api/echo")
    with redis_url_setting(CLOSED_REDIS_URL):
        assert flush_metrics(now=T0 + 1) is False
        client.get("/api/echo")
    assert flush_metrics(now=T0 + INTERVAL + 1)
    assert snapshot("route", now=T0 + 5) == {}  # nothing reached the window of the failed flush
    assert snapshot("route", now=T0 + INTERVAL + 5)["api"].count == 2


def test_recording_a_malformed_exchange_logs_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    broken = Exchange(request=RequestFactory().get("/api"), status=200)
    broken.route = object()  # type: ignore[assignment]  # no .name: recording it fails
    record_metrics(broken)
    assert "recording metrics failed" in caplog.text
    assert recorder.drain() == {}
