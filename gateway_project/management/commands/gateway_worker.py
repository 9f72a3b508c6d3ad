"""python manage.py gateway_worker [--once] [--tick SECONDS]: run the gateway's background jobs.

Safe to run more than once, on one machine or many: jobs that must run once per period across
the deployment take leases in the shared state store (see ``gateway_project/worker.py``).
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway_project.worker import (
    DEFAULT_TICK_SECONDS,
    PERIODIC_JOBS,
    JobSchedule,
    logger,
    run_round,
    run_worker_loop,
    stop_on_signals,
)


class Command(BaseCommand):
    help = "Run the gateway's background jobs (active health checks, ...) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one round and exit (1 if a job failed).")
        parser.add_argument(
            "--tick", type=float, default=DEFAULT_TICK_SECONDS, help="Seconds between rounds (default 1)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tick"] <= 0:
            raise CommandError("--tick must be a positive number of seconds.")
        schedule = JobSchedule(PERIODIC_JOBS)
        if options["once"]:
            failed = run_round(schedule)
            if failed:
                raise CommandError(f"Failed jobs: {', '.join(failed)} (see the log).")
            return
        stopped = threading.Event()
        logger.info("worker started: %s", ", ".join(job.name for job in schedule.jobs))
        with stop_on_signals(stopped) as received:
            rounds = run_worker_loop(schedule, tick=options["tick"], stopped=stopped)
        reason = received[0].name if received else "request"
        logger.info("worker stopped on %s after %d rounds", reason, rounds)
