"""The in-process recorder: what counts as an error, draining and restoring, the tool-name cap,
and exact counts under concurrent threads."""

from __future__ import annotations

import threading

import pytest
from django.test import RequestFactory

from gateway_project.exchange import Exchange
from monitoring.recorder import OTHER_TOOLS, Recorder, is_error


@pytest.mark.parametrize(
    ("status", "error_code", "counts_as_error"),
    [
        (200, "", False),
        (204, "", False),
        (304, "", False),
        (400, "invalid_request", False),  # the caller's mistake, refused as it should be
        (401, "credential_required", False),
        (404, "route_not_found", False),
        (429, "rate_limited", False),
        (500, "", True),  # the upstream's own 500, relayed
        (502, "upstream_unreachable", True),
        (503, "gateway_busy", True),
        (504, "upstream_timeout", True),
        (200, "upstream_stream_broken", True),  # a stream that broke off after its 200
        (200, "upstream_stream_silent", True),
    ],
)
def test_errors_are_5xx_and_streams_cut_short_never_4xx(status: int, error_code: str, counts_as_error: bool) -> None:
    exchange = Exchange(request=RequestFactory().get("/api"), status=status, error_code=error_code)
    assert is_error(exchange) is counts_as_error


def test_drain_hands_over_the_tallies_and_starts_from_zero() -> None:
    recorder = Recorder()
    recorder.add([("gateway", "all"), ("route", "weather")], 12.0, is_error=False)
    recorder.add([("gateway", "all")], 30.0, is_error=True)
    drained = recorder.drain()
    assert {key: (tally.count, tally.errors) for key, tally in drained.items()} == {
        ("gateway", "all"): (2, 1),
        ("route", "weather"): (1, 0),
    }
    assert recorder.drain() == {}


def test_restored_tallies_merge_with_what_was_counted_meanwhile() -> None:
    recorder = Recorder()
    recorder.add([("route", "weather")], 10.0, is_error=False)
    undelivered = recorder.drain()
    recorder.add([("route", "weather")], 20.0, is_error=True)
    recorder.restore(undelivered)
    tally = recorder.drain()[("route", "weather")]
    assert (tally.count, tally.errors, tally.latency_sum_us) == (2, 1, 30_000)


def test_tool_names_beyond_the_cap_count_under_their_services_other() -> None:
    recorder = Recorder(max_tool_keys=2)
    for tool in ("weather:forecast", "weather:alerts", "weather:invented-1", "weather:invented-2", "weather:forecast"):
        recorder.add([("tool", tool)], 5.0, is_error=False)
    counts = {key: tally.count for (_, key), tally in recorder.drain().items()}
    assert counts == {"weather:forecast": 2, "weather:alerts": 1, f"weather:{OTHER_TOOLS}": 2}


def test_the_tool_cap_holds_across_flushes() -> None:
    recorder = Recorder(max_tool_keys=1)
    recorder.add([("tool", "a:one")], 5.0, is_error=False)
    recorder.drain()
    recorder.add([("tool", "a:two")], 5.0, is_error=False)
    assert list(recorder.drain()) == [("tool", f"a:{OTHER_TOOLS}")]


def test_concurrent_threads_lose_no_count() -> None:
    recorder = Recorder()
    threads_count, per_thread = 8, 2000

    def count_many() -> None:
        for number in range(per_thread):
            recorder.add([("gateway", "all"), ("route", "r")], float(number % 50), is_error=number % 10 == 0)

    threads = [threading.Thread(target=count_many) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drained = recorder.drain()
    for key in (("gateway", "all"), ("route", "r")):
        assert drained[key].count == threads_count * per_thread
        assert drained[key].errors == threads_count * per_thread // 10
        assert sum(drained[key].buckets) == threads_count * per_thread
