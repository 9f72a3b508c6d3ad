"""Database connections per request: a new one each time, persistent, or psycopg's pool.

    .venv/bin/python bench/db_connections.py                    (about 1 minute; --help)

Each simulated request does to the database what a Django request does: ``request_started``
(``close_old_connections``), one small ORM query, ``request_finished`` (which closes the
connection when ``CONN_MAX_AGE`` is 0, or gives it back to the pool in pool mode). Three
configurations of the same PostgreSQL database, health checks on as in the gateway's settings:

- ``new_per_request``: ``CONN_MAX_AGE=0``, a connection opened and closed per request;
- ``persistent``: ``CONN_MAX_AGE=600`` (the gateway's default), one connection per thread, kept;
- ``pool``: ``CONN_MAX_AGE=0`` with Django 5.1+'s ``OPTIONS["pool"]`` (psycopg_pool), shared
  by the process's threads.

Each configuration runs in a process of its own (Django reads its settings once) against a
scratch database created for the run and dropped after it. *Connections opened* is PostgreSQL's
own count (``pg_stat_database.sessions``), read after the process has exited.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import fmt, log, print_table, write_json  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"
POOL_OPTIONS = {"min_size": 2, "max_size": 16, "timeout": 5}
MODES = ("new_per_request", "persistent", "pool")


def database_settings(url: str, mode: str) -> dict[str, Any]:
    """The DATABASES entry for ``mode``, built as gateway_project/settings.py builds its own."""
    import dj_database_url

    persistent = mode == "persistent"
    entry = dj_database_url.parse(url, conn_max_age=600 if persistent else 0, conn_health_checks=True)
    if mode == "pool":
        entry["OPTIONS"] = {"pool": dict(POOL_OPTIONS)}
    return entry


# --- the measured process -------------------------------------------------------------------


def setup_django(url: str, mode: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes"],
        DATABASES={"default": database_settings(url, mode)},
        USE_TZ=True,
    )
    django.setup()


def one_request() -> float:
    """Seconds for what a request does to the database: open (or reuse), one query, finish."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.signals import request_finished, request_started

    started = time.perf_counter()
    request_started.send(sender=None)
    ContentType.objects.filter(app_label="contenttypes").first()
    request_finished.send(sender=None)
    return time.perf_counter() - started


def measure(threads: int, seconds: float) -> dict[str, Any]:
    from django.db import connection

    one_request()  # warm: imports, the pool opened
    durations: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < deadline:
            durations[index].append(one_request())
        connection.close()

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    every = sorted(duration for per_thread in durations for duration in per_thread)
    return {
        "requests": len(every),
        "req_per_s": len(every) / elapsed,
        "p50_ms": statistics.median(every) * 1000,
        "p99_ms": every[int(len(every) * 0.99)] * 1000,
    }


def run_child(args: argparse.Namespace) -> None:
    setup_django(args.database_url, args.child)
    if args.migrate:
        from django.core.management import call_command

        call_command("migrate", "contenttypes", verbosity=0)
        return
    print(json.dumps(measure(args.threads, args.seconds)))


# --- the driver -----------------------------------------------------------------------------


def scratch_url(base: str) -> tuple[str, str]:
    name = f"gw_bench_db_{uuid.uuid4().hex[:10]}"
    return name, urlunsplit(urlsplit(base)._replace(path="/" + name))


def sessions_opened(admin_url: str, name: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def child(url: str, mode: str, *extra: str) -> str:
    command = [sys.executable, __file__, "--child", mode, "--database-url", url, *extra]
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def run_one(admin_url: str, name: str, url: str, mode: str, threads: int, seconds: float) -> dict[str, Any]:
    before = sessions_opened(admin_url, name)
    figures = json.loads(child(url, mode, "--threads", str(threads), "--seconds", str(seconds)))
    time.sleep(0.5)  # the exited process's backends report their sessions as they end
    figures["connections_opened"] = sessions_opened(admin_url, name) - before
    figures.update(mode=mode, threads=threads)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per run")
    parser.add_argument("--threads", default="1,8", help="concurrent request threads, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every configuration")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--migrate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.threads = int(args.threads.split(",")[0])
        run_child(args)
        return

    name, url = scratch_url(args.database_url)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        child(url, "persistent", "--migrate")
        runs = [
            run_one(args.database_url, name, url, mode, int(threads), args.seconds)
            for _round in range(args.repeat)
            for threads in args.threads.split(",")
            for mode in MODES  # interleaved, so a busy moment on the machine hits every mode
        ]
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(runs, args)


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    for threads in args.threads.split(","):
        for mode in MODES:
            mine = [run for run in runs if run["mode"] == mode and run["threads"] == int(threads)]
            middle = sorted(mine, key=lambda run: run["req_per_s"])[len(mine) // 2]
            rows.append(
                [
                    mode,
                    threads,
                    fmt(middle["req_per_s"], 0),
                    " / ".join(fmt(run["req_per_s"], 0) for run in mine),
                    fmt(middle["p50_ms"], 3),
                    fmt(middle["p99_ms"], 3),
                    str(middle["requests"]),
                    str(middle["connections_opened"]),
                ]
            )
    log(f"load average after the run: {os.getloadavg()}")
    print_table(
        ["mode", "threads", "req/s (median)", "all runs", "p50 ms", "p99 ms", "requests", "connections opened"], rows
    )
    write_json(args.json, {"runs": runs, "pool_options": POOL_OPTIONS, "seconds": args.seconds, "loadavg": os.getloadavg()})


if __name__ == "__main__":
    main()
