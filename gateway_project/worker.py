"""The gateway's background jobs and the loop that runs them (``manage.py gateway_worker``).

Every tick the loop runs each due job of ``PERIODIC_JOBS`` (a new job is one more entry there,
never a change to the loop). A job that raises is logged and retried at its next turn; the other
jobs and the loop go on. SIGTERM or SIGINT stops the loop after the job in progress.

Safe to run more than once, on one machine or many: jobs that must run once per period across
the deployment take leases in the shared state store (health checks do, per service).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from django.db import close_old_connections, connection

from authn.sessions import (
    SESSION_CLEANUP_EVERY_SECONDS,
    SESSION_FLUSH_EVERY_SECONDS,
    run_session_cleanup,
    run_session_flush,
)
from federation.jobs import refresh_virtual_servers
from monitoring.alerts import ALERT_EVALUATION_EVERY_SECONDS, run_alert_evaluation
from performance.cache import CACHE_CLEANUP_EVERY_SECONDS, run_cache_cleanup
from routing.health import run_due_health_checks
from security.api_keys import USAGE_FLUSH_EVERY_SECONDS, flush_usage

logger = logging.getLogger("gateway.worker")

DEFAULT_TICK_SECONDS = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A named job the worker runs every ``every_seconds`` (0: every tick)."""

    name: str
    run: Callable[[], None]
    every_seconds: float = 0.0


def check_target_health() -> None:
    """Probe the services whose health lease this worker wins; log every verdict that moved."""
    for outcome in run_due_health_checks(time.time()):
        if outcome.changed:
            logger.info(
                "target %s of %s became %s (%s)",
                outcome.target_url,
                outcome.service,
                "healthy" if outcome.healthy else "unhealthy",
                outcome.result.detail,
            )


def flush_api_key_usage() -> None:
    """Write the API key usage counted since the last flush to the database."""
    flushed = flush_usage()
    if flushed:
        logger.debug("usage of %d API key(s) flushed", flushed)


PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    # Every tick: the leases in the state store, not this loop, decide which services are due,
    # so a service's interval is honoured to within one tick whatever it is.
    PeriodicJob("health checks", check_target_health),
    # API key usage counted in the state store per request, written to the database in bulk;
    # a lease there makes one worker flush at a time.
    PeriodicJob("API key usage", flush_api_key_usage, every_seconds=USAGE_FLUSH_EVERY_SECONDS),
    # Session activity lives in the state store (sliding TTLs); the rows mirror it in bulk.
    PeriodicJob("session activity", run_session_flush, every_seconds=SESSION_FLUSH_EVERY_SECONDS),
    PeriodicJob("expired sessions", run_session_cleanup, every_seconds=SESSION_CLEANUP_EVERY_SECONDS),
    # Cached answers past their TTL; harmless to run on every worker at once (atomic removals).
    PeriodicJob("response cache cleanup", run_cache_cleanup, every_seconds=CACHE_CLEANUP_EVERY_SECONDS),
    # Alert rules against the metrics every gateway process flushes (each process flushes its own,
    # from a thread of its own: monitoring/flush.py); a lease makes one worker evaluate.
    PeriodicJob("alert evaluation", run_alert_evaluation, every_seconds=ALERT_EVALUATION_EVERY_SECONDS),
    # Virtual servers' member lists, each on its own lease (federation/jobs.py).
    PeriodicJob("virtual server lists", refresh_virtual_servers),
)


class JobSchedule:
    """When each job next runs, on an injectable monotonic clock."""

    def __init__(self, jobs: Sequence[PeriodicJob], clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs = tuple(jobs)
        self.clock = clock
        self._next_run: dict[str, float] = {}

    def due(self) -> list[PeriodicJob]:
        now = self.clock()
        return [job for job in self.jobs if now >= self._next_run.get(job.name, now)]

    def ran(self, job: PeriodicJob) -> None:
        self._next_run[job.name] = self.clock() + job.every_seconds


def run_round(schedule: JobSchedule) -> list[str]:
    """Run every due job once; return the names of those that failed (already logged)."""
    failed: list[str] = []
    for job in schedule.due():
        try:
            job.run()
        except Exception:  # one failing job must not stop the others, nor the worker
            logger.exception("worker job %r failed; it runs again at its next turn", job.name)
            failed.append(job.name)
        finally:
            schedule.ran(job)
            _refresh_database_connections()
    return failed


def _refresh_database_connections() -> None:
    """What a request boundary does for a web process: drop broken or expired connections, so a
    database restart costs one failed round, not every round after it. A caller's open
    transaction (tests run the loop inside one) is the caller's to manage, so it is left alone."""
    if not connection.in_atomic_block:
        close_old_connections()


def run_worker_loop(schedule: JobSchedule, *, tick: float, stopped: threading.Event) -> int:
    """Run rounds every ``tick`` seconds until ``stopped`` is set; return how many rounds ran.

    Also usable from a thread (the event is the only way in), e.g. beside the gateway when the
    state store is in-process memory and a separate worker process could not share it.
    """
    rounds = 0
    while not stopped.is_set():
        run_round(schedule)
        rounds += 1
        stopped.wait(tick)
    return rounds


@contextmanager
def stop_on_signals(stopped: threading.Event) -> Iterator[list[signal.Signals]]:
    """Turn SIGTERM/SIGINT into ``stopped.set()`` for the duration; restore the old handlers after.

    Yields the signals received. The handler only records and sets: logging from inside a signal
    handler could interleave with a log line the interrupted code was writing.
    """
    received: list[signal.Signals] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum))
        stopped.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)




def start_worker_thread(tick: float = DEFAULT_TICK_SECONDS) -> threading.Event:
    """Run the jobs on a daemon thread of this process; set the returned event to stop them.

    For the embedded shape: with in-process state a separate worker process could not share
    its verdicts with the gateway, so the gateway process runs the jobs itself.
    """
    stopped = threading.Event()
    thread = threading.Thread(
        target=run_worker_loop,
        args=(JobSchedule(PERIODIC_JOBS),),
        kwargs={"tick": tick, "stopped": stopped},
        name="gateway-worker",
        daemon=True,
    )
    thread.start()
    logger.info("worker thread started in the gateway process: %s", ", ".join(job.name for job in PERIODIC_JOBS))
    return stopped
