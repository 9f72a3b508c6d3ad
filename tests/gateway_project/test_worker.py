"""The background worker: its rounds and jobs, its health leases, and the process it runs as."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from gateway_project.state import get_state_store, reset_state_store
from gateway_project.state.redis_store import RedisStateStore
from routing.health import fails_key, lease_key, run_due_health_checks
from gateway_project.worker import JobSchedule, PeriodicJob, run_round, run_worker_loop
from routing.models import Service, Target
from tests.gateway_project.conftest import CLOSED_REDIS_URL, REDIS_TEST_URL, Backend, delete_redis_keys, unique_prefix
from tests.live_servers import PROJECT_DIR, free_port
from tests.upstream_server import UpstreamServer

WORKER_LOGGER = "gateway.worker"
PROCESS_TIMEOUT_SECONDS = 20.0


def make_service(url: str, **fields: Any) -> Service:
    service = Service.objects.create(name=f"s{uuid.uuid4().hex[:8]}", kind="http", **fields)
    Target.objects.create(service=service, url=url)
    return service


def target_of(service: Service) -> Target:
    return Target.objects.get(service=service)


# --- rounds and jobs ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.django_db  # a round refreshes database connections after each job
def test_a_failing_job_is_logged_and_neither_the_other_jobs_nor_the_loop_stop(caplog: pytest.LogCaptureFixture) -> None:
    stopped = threading.Event()
    runs: dict[str, int] = {"flaky": 0, "steady": 0}

    def flaky() -> None:
        runs["flaky"] += 1
        if runs["flaky"] <= 2:
            raise RuntimeError("the store went away")

    def steady() -> None:
        runs["steady"] += 1
        if runs["steady"] == 3:
            stopped.set()

    schedule = JobSchedule([PeriodicJob("flaky", flaky), PeriodicJob("steady", steady)])
    with caplog.at_level(logging.ERROR, logger=WORKER_LOGGER):
        rounds = run_worker_loop(schedule, tick=0.001, stopped=stopped)
    assert rounds == 3
    assert runs == {"flaky": 3, "steady": 3}
    failures = [r for r in caplog.records if r.name == WORKER_LOGGER and r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert "'flaky' failed" in failures[0].getMessage() and failures[0].exc_info is not None


@pytest.mark.django_db  # a round refreshes database connections after each job
def test_each_job_runs_at_its_own_period() -> None:
    clock = FakeClock()
    ran: list[str] = []
    every_tick = PeriodicJob("every tick", lambda: ran.append("tick"))
    every_minute = PeriodicJob("every minute", lambda: ran.append("minute"), every_seconds=60)
    schedule = JobSchedule([every_tick, every_minute], clock=clock)
    for now in (100.0, 101.0, 159.0, 160.0):
        clock.now = now
        run_round(schedule)
    assert ran == ["tick", "minute", "tick", "tick", "tick", "minute"]


@pytest.mark.django_db  # a round refreshes database connections after each job
def test_a_job_that_failed_waits_for_its_next_turn() -> None:
    clock = FakeClock()
    attempts: list[float] = []

    def failing() -> None:
        attempts.append(clock.now)
        raise ValueError("bad data")

    schedule = JobSchedule([PeriodicJob("failing", failing, every_seconds=10)], clock=clock)
    for now in (100.0, 105.0, 110.0):
        clock.now = now
        assert run_round(schedule) == (["failing"] if now != 105.0 else [])
    assert attempts == [100.0, 110.0]


# --- the command, in process -------------------------------------------------------------------


@pytest.mark.django_db
def test_once_checks_every_service_even_when_one_target_cannot_be_reached(upstream: UpstreamServer) -> None:
    good = make_service(upstream.url)
    bad = make_service("http://no-such-host.invalid:8080", health_check_timeout=1.0)
    call_command("gateway_worker", "--once")
    assert [(r["method"], r["path"]) for r in upstream.requests] == [("GET", "/")]
    assert target_of(good).last_health_check is not None and target_of(good).response_time_ms is not None
    assert target_of(bad).last_health_check is not None and target_of(bad).response_time_ms is None
    assert get_state_store().get(fails_key(target_of(bad).pk)) == "1"


@pytest.mark.django_db
def test_once_logs_a_target_turning_unhealthy_at_info(caplog: pytest.LogCaptureFixture) -> None:
    service = make_service(f"http://127.0.0.1:{free_port()}", unhealthy_threshold=1)
    with caplog.at_level(logging.INFO, logger=WORKER_LOGGER):
        call_command("gateway_worker", "--once")
    [record] = [r for r in caplog.records if r.name == WORKER_LOGGER]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith(f"target {target_of(service).url} of {service.name} became unhealthy (cannot connect")


@pytest.mark.django_db
def test_once_exits_non_zero_when_a_job_fails(upstream: UpstreamServer, caplog: pytest.LogCaptureFixture) -> None:
    make_service(upstream.url)
    with override_settings(REDIS_URL=CLOSED_REDIS_URL):
        reset_state_store()
        try:
            with pytest.raises(CommandError, match=r"^Failed jobs: health checks \(see the log\)\.$"):
                call_command("gateway_worker", "--once")
        finally:
            reset_state_store()
    assert upstream.requests == []  # no lease, no probe
    assert any("'health checks' failed" in r.getMessage() for r in caplog.records if r.name == WORKER_LOGGER)


def test_a_tick_must_be_positive() -> None:
    with pytest.raises(CommandError, match="--tick must be a positive number of seconds"):
        call_command("gateway_worker", "--tick", "0")


# --- leases ------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    chosen = Backend(request.param)
    yield chosen
    chosen.cleanup()


@pytest.mark.django_db
def test_two_workers_sharing_a_store_check_a_service_once_per_interval(upstream: UpstreamServer, backend: Backend) -> None:
    interval = 10.0 if backend.name == "memory" else 0.5
    make_service(upstream.url, health_check_interval=interval)
    store = backend.make_store()

    assert len(run_due_health_checks(time.time(), store, worker_id="worker-a")) == 1
    assert run_due_health_checks(time.time(), store, worker_id="worker-b") == []
    assert run_due_health_checks(time.time(), store, worker_id="worker-a") == []
    assert len(upstream.requests) == 1

    assert backend.wait_until_gone(store, lease_key(Service.objects.get().pk), interval)
    assert len(run_due_health_checks(time.time(), store, worker_id="worker-b")) == 1
    assert store.get(lease_key(Service.objects.get().pk)) == "worker-b"
    assert len(upstream.requests) == 2


def take_lease_in_another_process(service_id: int, prefix: str) -> bool:
    """Another OS process, sharing only Redis, contends for the service's health lease."""
    code = (
        "import django; django.setup()\n"
        "from routing.health import take_health_lease\n"
        f"print(take_health_lease({service_id}, 30.0, 'other-process'))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "REDIS_URL": REDIS_TEST_URL,
        "GATEWAY_STATE_PREFIX": prefix,
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_SECONDS
    )
    assert done.returncode == 0, done.stderr
    return {"True": True, "False": False}[done.stdout.strip()]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    delete_redis_keys(prefix)


@pytest.mark.django_db
def test_a_lease_held_by_another_process_skips_the_service(upstream: UpstreamServer, redis_prefix: str) -> None:
    service = make_service(upstream.url, health_check_interval=30.0)
    assert take_lease_in_another_process(service.pk, redis_prefix) is True
    store = RedisStateStore(REDIS_TEST_URL, prefix=redis_prefix)
    assert run_due_health_checks(time.time(), store, worker_id="this-process") == []
    assert upstream.requests == []
    assert store.get(lease_key(service.pk)) == "other-process"


@pytest.mark.django_db
def test_another_process_cannot_take_a_lease_this_worker_holds(upstream: UpstreamServer, redis_prefix: str) -> None:
    service = make_service(upstream.url, health_check_interval=30.0)
    store = RedisStateStore(REDIS_TEST_URL, prefix=redis_prefix)
    assert len(run_due_health_checks(time.time(), store, worker_id="this-process")) == 1
    assert take_lease_in_another_process(service.pk, redis_prefix) is False
    assert store.get(lease_key(service.pk)) == "this-process"


# --- the command as a process ------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each process test copies (the test run's own database is
    invisible to other processes: in memory, or inside a PostgreSQL test transaction)."""
    path = tmp_path_factory.mktemp("worker-db") / "template.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{path}"},
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture
def worker_env(migrated_database: Path, tmp_path: Path, redis_prefix: str) -> dict[str, str]:
    database = tmp_path / "worker.sqlite3"
    shutil.copy(migrated_database, database)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "GATEWAY_STATE_PREFIX": redis_prefix,  # only used when REDIS_URL is set (the scale-out shape)
        "LOG_LEVEL": "INFO",
    }


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_SECONDS,
    )


def test_worker_process_once_checks_and_exits_zero(upstream: UpstreamServer, worker_env: dict[str, str]) -> None:
    assert manage(worker_env, "add_route", "/api/orders", upstream.url, "--kind", "http", "--open").returncode == 0
    done = manage(worker_env, "gateway_worker", "--once")
    assert done.returncode == 0, done.stderr
    assert [(r["method"], r["path"]) for r in upstream.requests] == [("GET", "/")]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_process_stops_cleanly_on_a_stop_signal(
    upstream: UpstreamServer, worker_env: dict[str, str], stop_signal: signal.Signals
) -> None:
    assert manage(worker_env, "add_route", "/api/orders", upstream.url, "--kind", "http", "--open").returncode == 0
    process = subprocess.Popen(
        [sys.executable, "manage.py", "gateway_worker", "--tick", "0.1"],
        cwd=PROJECT_DIR,
        env=worker_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT_SECONDS
        while not upstream.requests and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.requests, "the worker never probed the target"
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert f"worker stopped on {stop_signal.name} after" in stderr
    assert "Traceback" not in stderr
