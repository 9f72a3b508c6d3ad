"""Moving each process's tallies into the shared store, once per interval, from every process.

Each flush, in one write (one round trip with Redis):
- adds the tallies to the cumulative totals of their dimension (what /metrics counts);
- adds them to the window of the flush time (``layout.window_name``), the time series the
  dashboard and the alerts read, kept a little over an hour;
- replaces this process's gauges (memory, CPU, in-flight) under a key that lives three
  intervals, so a process that died drops out of the list by itself.

The tallies are taken out of the recorder first; when the store cannot be reached they are given
back and go out with the next flush (into a later window): an outage delays metrics, it does
not lose them, and it never reaches a request.

Why a thread in every serving process, not a worker job: each process counts in its own memory,
while the worker runs once per deployment (a ``gateway_worker`` process with Redis, a thread of
the gateway process when embedded), so a job there would only ever flush the worker's own,
empty, recorder. Every process that records exchanges therefore starts its own flusher thread,
lazily, on its first recorded exchange (``stages.record_metrics``). That needs no wiring in
any entry point (granian's workers, runserver, the tests' live gateways), it starts after a fork
(the pid is checked), and processes that never proxy (the worker, management commands) never
run one. The price: a process shows in the gauges only once it has served its first exchange.
The thread wakes just after each interval boundary, so every process's flush of an interval
lands in the same window; a last flush runs at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
from collections.abc import Mapping

from gateway_project.state import StateStoreUnavailable
from monitoring.conf import monitoring_settings
from monitoring.histogram import Tally
from monitoring.layout import TOTALS_TTL_SECONDS, fields_of, totals_name, window_name, window_start, window_ttl
from monitoring.process import sample_process_gauges
from monitoring.recorder import DimensionKey, Recorder, recorder
from monitoring.store import CounterAdd, GaugeSet, get_metrics_store

logger = logging.getLogger("gateway.metrics")

# A process's gauges outlive this many missed flushes, then it counts as gone.
GAUGE_TTL_INTERVALS = 3
# The flusher wakes this share of an interval after each boundary (spread a little per process,
# so many processes do not hit Redis in the same millisecond).
WAKE_AFTER_BOUNDARY = (0.02, 0.10)
# While the store is down, one warning per this many seconds.
WARN_EVERY_SECONDS = 60.0


def counter_adds(tallies: Mapping[DimensionKey, Tally], start: int, interval: int) -> list[CounterAdd]:
    """The additions that put ``tallies`` into the totals and into the window at ``start``."""
    by_dimension: dict[str, dict[str, int]] = {}
    for (dimension, key), tally in tallies.items():
        by_dimension.setdefault(dimension, {}).update(fields_of(key, tally))
    adds: list[CounterAdd] = []
    for dimension, fields in by_dimension.items():
        adds.append(CounterAdd(totals_name(dimension), fields, TOTALS_TTL_SECONDS))
        adds.append(CounterAdd(window_name(dimension, start), fields, window_ttl(interval)))
    return adds


def flush_metrics(now: float | None = None, *, source: Recorder = recorder) -> bool:
    """Move what ``source`` counted, and this process's gauges, into the store.

    ``now`` (epoch seconds) chooses the window; True when the store took it, False when it was
    unreachable (the tallies are back in ``source`` then).
    """
    now = time.time() if now is None else now
    interval = monitoring_settings.interval_seconds
    tallies = source.drain()
    gauges = sample_process_gauges(now)
    gauge_set = GaugeSet(gauges.process, gauges.to_json(), ttl=GAUGE_TTL_INTERVALS * interval)
    try:
        get_metrics_store().write(counter_adds(tallies, window_start(now, interval), interval), gauge_set)
    except StateStoreUnavailable as exc:
        source.restore(tallies)
        _warn_store_down(exc)
        return False
    except BaseException:
        source.restore(tallies)  # a bug must not lose the counts either; it still surfaces
        raise
    return True


_last_warning = -WARN_EVERY_SECONDS
_warning_lock = threading.Lock()


def _warn_store_down(error: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    with _warning_lock:
        if now - _last_warning < WARN_EVERY_SECONDS:
            return
        _last_warning = now
    logger.warning("metrics store unavailable, counts kept in memory until it is back: %s", error)


def flush_quietly() -> None:
    """One flush that never raises (the thread's loop, and at exit)."""
    try:
        flush_metrics()
    except Exception:
        logger.exception("metrics flush failed; the counts are kept for the next one")


# --- the per-process flusher thread -------------------------------------------------------------


class MetricsFlusher:
    """A daemon thread flushing every ``every_seconds``, just after each boundary."""

    def __init__(self, every_seconds: float) -> None:
        self.every_seconds = every_seconds
        self._offset = every_seconds * random.uniform(*WAKE_AFTER_BOUNDARY)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-flusher", daemon=True)

    def start(self) -> MetricsFlusher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._thread.join(timeout)

    def seconds_to_next_flush(self, now: float) -> float:
        return self.every_seconds - (now % self.every_seconds) + self._offset

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds_to_next_flush(time.time())):
            flush_quietly()


_flusher: MetricsFlusher | None = None
_flusher_pid = 0
_flusher_lock = threading.Lock()
_exit_flush_registered = False


def ensure_flusher_started() -> None:
    """Start this process's flusher unless it runs (cheap when it does: one pid comparison)."""
    global _flusher, _flusher_pid, _exit_flush_registered
    if _flusher_pid == os.getpid() or not monitoring_settings.background_flush:
        return
    with _flusher_lock:
        if _flusher_pid == os.getpid():
            return
        # After a fork the parent's thread does not exist here: a new one, whatever _flusher says.
        _flusher = MetricsFlusher(monitoring_settings.interval_seconds).start()
        _flusher_pid = os.getpid()
        if not _exit_flush_registered:
            atexit.register(_flush_at_exit)
            _exit_flush_registered = True
    logger.info("metrics flusher started in process %d (every %ss)", _flusher_pid, _flusher.every_seconds)


def _flush_at_exit() -> None:
    """Send the last interval's counts, unless the flusher was stopped (then so were flushes)."""
    if _flusher is not None and _flusher_pid == os.getpid():
        flush_quietly()


def stop_flusher() -> None:
    """Stop this process's flusher (tests flush by hand); the next exchange may start it again."""
    global _flusher, _flusher_pid
    with _flusher_lock:
        flusher, _flusher, _flusher_pid = _flusher, None, 0
    if flusher is not None:
        flusher.stop()
