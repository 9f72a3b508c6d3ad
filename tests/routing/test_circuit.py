"""The per-target circuit breaker, on both backends: memory on a fake clock, and real Redis."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import gateway_project.state
from gateway_project.errors import JSONRPC_CONTENT_TYPE, JSONRPC_SERVER_ERROR, PROBLEM_CONTENT_TYPE, render_error
from gateway_project.state.memory import MemoryStateStore
from routing.circuit import (
    ADMITTED_CLOSED,
    CIRCUIT_OPEN_DETAIL,
    HALF_OPEN_RETRY_AFTER_SECONDS,
    PROBES_BUSY_DETAIL,
    RETRY_AFTER_HEADER,
    Admission,
    CircuitOpen,
    CircuitState,
    before_call,
    circuit_state,
    circuit_states,
    failures_key,
    probes_key,
    record_failure,
    record_success,
)
from routing.snapshot import ServiceConfig, TargetConfig
from routing.target_status import circuit_open_key, unavailable_target_ids
from tests.gateway_project.conftest import REDIS_TEST_URL, Backend, FakeClock, unique_prefix

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT_SECONDS = 120
LONG = 3_600.0  # a window or recovery time no test waits out
# On Redis real time passes between the trip and the refusal (a second process may take a while to
# start on a busy box), so the Retry-After of a LONG recovery may have counted down this far.
REDIS_COUNTDOWN_ALLOWANCE = 60


def make_target(target_id: int = 1) -> TargetConfig:
    return TargetConfig(
        id=target_id,
        url=f"http://127.0.0.1:{9000 + target_id}",
        scheme="http",
        host="127.0.0.1",
        port=9000 + target_id,
        base_path="",
        weight=1,
        healthy=True,
        auth_header="",
        auth_value="",
    )


def make_service(
    *, threshold: int = 3, window: float = LONG, recovery: float = LONG, probes: int = 1, target_ids: tuple[int, ...] = (1,)
) -> ServiceConfig:
    return ServiceConfig(
        id=1,
        name="weather",
        kind="mcp",
        lb_policy="round_robin",
        connect_timeout=1.0,
        request_timeout=5.0,
        response_timeout=5.0,
        max_retries=0,
        retry_backoff_ms=0,
        retry_backoff_max_ms=0,
        retry_budget_percent=20,
        circuit_failure_threshold=threshold,
        circuit_window_seconds=window,
        circuit_recovery_seconds=recovery,
        circuit_half_open_probes=probes,
        health_check_path="",
        health_check_interval=10.0,
        health_check_timeout=5.0,
        healthy_threshold=2,
        unhealthy_threshold=3,
        passive_failure_threshold=5,
        passive_ejection_seconds=30.0,
        targets=tuple(make_target(target_id) for target_id in target_ids),
    )



def retry_after_matches_long_recovery(headers: dict[str, str], backend_name: str) -> bool:
    """The fake clock stands still, so memory must say exactly LONG; Redis a little less at most."""
    seconds = int(headers[RETRY_AFTER_HEADER])
    if backend_name == "memory":
        return seconds == int(LONG)
    return int(LONG) - REDIS_COUNTDOWN_ALLOWANCE <= seconds <= int(LONG)


def fail_times(service: ServiceConfig, target: TargetConfig, count: int, store: Any) -> list[bool]:
    return [record_failure(service, target, ADMITTED_CLOSED, store=store) for _ in range(count)]


def trip(service: ServiceConfig, target: TargetConfig, store: Any) -> None:
    assert fail_times(service, target, service.circuit_failure_threshold, store)[-1] is True


def refusal(service: ServiceConfig, target: TargetConfig, store: Any) -> CircuitOpen:
    with pytest.raises(CircuitOpen) as raised:
        before_call(service, target, store=store)
    return raised.value


def wait_for_half_open(backend: Backend, service: ServiceConfig, target: TargetConfig, store: Any) -> None:
    assert backend.wait_until_gone(store, circuit_open_key(target.id), service.circuit_recovery_seconds)
    assert circuit_state(target.id, store=store) == CircuitState.HALF_OPEN


# --- closed -> open ----------------------------------------------------------------------------


def test_opens_after_exactly_threshold_failures_in_the_window(store: Any) -> None:
    service, target = make_service(threshold=4), make_target()
    assert fail_times(service, target, 3, store) == [False, False, False]
    assert circuit_state(target.id, store=store) == CircuitState.CLOSED
    assert before_call(service, target, store=store) == ADMITTED_CLOSED
    assert record_failure(service, target, ADMITTED_CLOSED, store=store) is True
    assert circuit_state(target.id, store=store) == CircuitState.OPEN


def test_failures_spread_wider_than_the_window_do_not_open_it(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=3, window=backend.short_ttl), make_target()
    assert fail_times(service, target, 2, store) == [False, False]
    assert backend.wait_until_gone(store, failures_key(target.id), service.circuit_window_seconds)
    assert fail_times(service, target, 2, store) == [False, False]
    assert circuit_state(target.id, store=store) == CircuitState.CLOSED
    assert record_failure(service, target, ADMITTED_CLOSED, store=store) is True


def test_window_starts_at_the_first_failure_not_the_latest() -> None:
    clock = FakeClock()
    store = MemoryStateStore(prefix=unique_prefix(), clock=clock)
    service, target = make_service(threshold=3, window=30.0), make_target()
    record_failure(service, target, ADMITTED_CLOSED, store=store)
    clock.advance(29.0)
    record_failure(service, target, ADMITTED_CLOSED, store=store)
    clock.advance(1.0)  # the window opened by the first failure ends here
    assert record_failure(service, target, ADMITTED_CLOSED, store=store) is False
    assert circuit_state(target.id, store=store) == CircuitState.CLOSED


def test_successes_do_not_reset_the_failure_count(store: Any) -> None:
    service, target = make_service(threshold=3), make_target()
    fail_times(service, target, 2, store)
    record_success(service, target, before_call(service, target, store=store), store=store)
    assert record_failure(service, target, ADMITTED_CLOSED, store=store) is True


def test_failures_after_a_trip_count_afresh_towards_the_next_one(store: Any) -> None:
    """Late failures of calls admitted before the trip start a new count; they re-open once it is reached."""
    service, target = make_service(threshold=3), make_target()
    trip(service, target, store)
    assert fail_times(service, target, 3, store) == [False, False, True]
    assert circuit_state(target.id, store=store) == CircuitState.OPEN


def test_breakers_of_different_targets_are_independent(store: Any) -> None:
    service = make_service(threshold=2, target_ids=(1, 2))
    first, second = service.targets
    trip(service, first, store)
    assert circuit_states([1, 2], store=store) == {1: CircuitState.OPEN, 2: CircuitState.CLOSED}
    assert before_call(service, second, store=store) == ADMITTED_CLOSED


def test_concurrent_failures_open_the_breaker_exactly_once(store: Any) -> None:
    """8 threads record 25 failures each against a threshold of 200: one of them opens it."""
    threads, per_thread = 8, 25
    service, target = make_service(threshold=threads * per_thread), make_target()
    barrier = threading.Barrier(threads)
    opened: list[int] = []

    def work() -> None:
        barrier.wait(timeout=30)
        opened.append(sum(fail_times(service, target, per_thread, store)))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(opened) == threads
    assert sum(opened) == 1
    assert circuit_state(target.id, store=store) == CircuitState.OPEN


# --- the hot path ------------------------------------------------------------------------------


class RecordingStore:
    """A real store that also notes which operations each call made."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.inner, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return operation(*args, **kwargs)

        return recorded


def test_closed_breaker_costs_one_read_per_call_and_nothing_per_success(store: Any) -> None:
    service, target = make_service(), make_target()
    recording = RecordingStore(store)
    admission = before_call(service, target, store=recording)
    record_success(service, target, admission, store=recording)
    assert recording.calls == ["get_many"]


# --- open --------------------------------------------------------------------------------------


def test_open_breaker_refuses_with_503_and_retry_after(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=2, recovery=LONG), make_target()
    trip(service, target, store)
    refused = refusal(service, target, store)
    assert (refused.status, refused.code, refused.title) == (503, "circuit_open", "Upstream circuit open")
    assert refused.detail == CIRCUIT_OPEN_DETAIL.format(service="weather")
    assert list(refused.headers) == [RETRY_AFTER_HEADER]
    assert retry_after_matches_long_recovery(refused.headers, backend.name)


def test_retry_after_counts_down_with_the_open_flag() -> None:
    clock = FakeClock()
    store = MemoryStateStore(prefix=unique_prefix(), clock=clock)
    service, target = make_service(threshold=1, recovery=30.0), make_target()
    trip(service, target, store)
    clock.advance(10.5)
    assert refusal(service, target, store).headers == {RETRY_AFTER_HEADER: "20"}  # 19.5 s left, rounded up
    clock.advance(19.25)
    assert refusal(service, target, store).headers == {RETRY_AFTER_HEADER: "1"}  # 0.25 s left: never 0
    clock.advance(0.25)
    assert before_call(service, target, store=store).is_probe


class ExpiringBetweenReads(MemoryStateStore):
    """A memory store whose clock jumps just before each ``ttl`` read (a flag expiring mid-request)."""

    def __init__(self, clock: FakeClock, jump: float) -> None:
        super().__init__(prefix=unique_prefix(), clock=clock)
        self._fake_clock, self._jump = clock, jump

    def ttl(self, key: str) -> float | None:
        self._fake_clock.advance(self._jump)
        return super().ttl(key)


def test_refusal_racing_the_open_flag_expiry_says_retry_after_one_second() -> None:
    service, target = make_service(threshold=1, recovery=30.0), make_target()
    store = ExpiringBetweenReads(FakeClock(), jump=30.0)
    trip(service, target, store)
    assert refusal(service, target, store).headers == {RETRY_AFTER_HEADER: "1"}


def test_open_refusal_renders_as_jsonrpc_error_with_the_request_id(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=1), make_target()
    trip(service, target, store)
    response = render_error(refusal(service, target, store), jsonrpc=True, request_id=7)
    assert response.status_code == 503
    assert response["Content-Type"] == JSONRPC_CONTENT_TYPE
    assert retry_after_matches_long_recovery({RETRY_AFTER_HEADER: response[RETRY_AFTER_HEADER]}, backend.name)
    assert json.loads(response.content) == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {
            "code": JSONRPC_SERVER_ERROR,
            "message": "Service weather is failing; calls to it are paused",
            "data": {"status": 503, "type": "circuit_open"},
        },
    }


def test_open_refusal_renders_as_problem_json_off_mcp_routes(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=1), make_target()
    trip(service, target, store)
    response = render_error(refusal(service, target, store), jsonrpc=False, instance="/api/x")
    assert response.status_code == 503
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert retry_after_matches_long_recovery({RETRY_AFTER_HEADER: response[RETRY_AFTER_HEADER]}, backend.name)
    assert json.loads(response.content) == {
        "type": "urn:mcp-gateway:error:circuit_open",
        "title": "Upstream circuit open",
        "status": 503,
        "detail": "Service weather is failing; calls to it are paused",
        "instance": "/api/x",
    }


def test_breaker_stays_open_until_the_recovery_time_has_passed() -> None:
    clock = FakeClock()
    store = MemoryStateStore(prefix=unique_prefix(), clock=clock)
    service, target = make_service(threshold=1, recovery=30.0), make_target()
    trip(service, target, store)
    clock.advance(29.75)
    assert circuit_state(target.id, store=store) == CircuitState.OPEN
    clock.advance(0.25)
    assert circuit_state(target.id, store=store) == CircuitState.HALF_OPEN


# --- half-open ---------------------------------------------------------------------------------


def test_half_open_admits_exactly_the_configured_probes(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=1, recovery=backend.short_ttl, probes=2), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    admissions = [before_call(service, target, store=store) for _ in range(2)]
    assert all(admission.is_probe for admission in admissions)
    for _ in range(3):
        refused = refusal(service, target, store)
        assert (refused.status, refused.code) == (503, "circuit_open")
        assert refused.detail == PROBES_BUSY_DETAIL.format(service="weather")
        assert refused.headers == {RETRY_AFTER_HEADER: str(HALF_OPEN_RETRY_AFTER_SECONDS)}
    assert circuit_state(target.id, store=store) == CircuitState.HALF_OPEN


def test_concurrent_callers_in_half_open_get_exactly_the_configured_probes(backend: Backend, store: Any) -> None:
    callers = 12
    service, target = make_service(threshold=1, recovery=backend.short_ttl, probes=3), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []

    def call() -> None:
        barrier.wait(timeout=30)
        try:
            outcomes.append("probe" if before_call(service, target, store=store).is_probe else "closed")
        except CircuitOpen:
            outcomes.append("refused")

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["probe"] * 3 + ["refused"] * (callers - 3)


def test_successful_probe_closes_the_breaker(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=2, recovery=backend.short_ttl), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    probe = before_call(service, target, store=store)
    record_success(service, target, probe, store=store)
    assert circuit_state(target.id, store=store) == CircuitState.CLOSED
    assert [before_call(service, target, store=store) for _ in range(5)] == [ADMITTED_CLOSED] * 5
    assert store.get(probes_key(target.id)) is None
    # Closed afresh: the threshold counts from zero again.
    assert fail_times(service, target, 2, store) == [False, True]


def test_failed_probe_reopens_for_another_recovery_period(backend: Backend, store: Any) -> None:
    recovery = backend.short_ttl
    service, target = make_service(threshold=3, recovery=recovery), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    probe = before_call(service, target, store=store)
    assert record_failure(service, target, probe, store=store) is True
    assert circuit_state(target.id, store=store) == CircuitState.OPEN
    assert recovery / 2 < store.ttl(circuit_open_key(target.id)) <= recovery
    assert refusal(service, target, store).headers == {RETRY_AFTER_HEADER: str(math.ceil(recovery))}
    assert store.get(probes_key(target.id)) is None  # the next half-open period starts with every slot free
    wait_for_half_open(backend, service, target, store)
    assert before_call(service, target, store=store).is_probe


def test_probe_that_never_reports_frees_its_slot_after_the_recovery_time(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=1, recovery=backend.short_ttl, probes=1), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    assert before_call(service, target, store=store).is_probe  # this probe's process dies
    refusal(service, target, store)
    assert backend.wait_until_gone(store, probes_key(target.id), service.circuit_recovery_seconds)
    assert before_call(service, target, store=store).is_probe
    refusal(service, target, store)


def test_probe_slot_is_held_until_the_recovery_time_has_passed() -> None:
    clock = FakeClock()
    store = MemoryStateStore(prefix=unique_prefix(), clock=clock)
    service, target = make_service(threshold=1, recovery=30.0), make_target()
    trip(service, target, store)
    clock.advance(30.0)
    assert before_call(service, target, store=store).is_probe
    clock.advance(29.75)
    refusal(service, target, store)
    clock.advance(0.25)
    assert before_call(service, target, store=store).is_probe


def test_late_probe_success_does_not_close_a_breaker_another_probe_reopened(backend: Backend, store: Any) -> None:
    service, target = make_service(threshold=1, recovery=backend.short_ttl, probes=2), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    slow, fast = before_call(service, target, store=store), before_call(service, target, store=store)
    record_failure(service, target, fast, store=store)
    record_success(service, target, slow, store=store)
    assert circuit_state(target.id, store=store) == CircuitState.OPEN
    wait_for_half_open(backend, service, target, store)


@pytest.mark.parametrize("admission", [ADMITTED_CLOSED, Admission(probe_of="an-earlier-trip")], ids=["closed", "stale"])
def test_success_of_a_call_that_was_not_a_probe_does_not_close_the_breaker(
    backend: Backend, store: Any, admission: Admission
) -> None:
    service, target = make_service(threshold=1, recovery=backend.short_ttl), make_target()
    trip(service, target, store)
    wait_for_half_open(backend, service, target, store)
    record_success(service, target, admission, store=store)
    assert circuit_state(target.id, store=store) == CircuitState.HALF_OPEN


# --- what the rest of the gateway sees -------------------------------------------------------


def test_state_and_open_flag_follow_each_step(backend: Backend, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the process-wide store left to default, the balancer's view matches the breaker's."""
    monkeypatch.setattr(gateway_project.state, "_store", store)
    service, target = make_service(threshold=2, recovery=backend.short_ttl), make_target()

    def seen() -> tuple[CircuitState, bool]:
        return circuit_state(target.id), target.id in unavailable_target_ids([target.id])

    assert seen() == (CircuitState.CLOSED, False)
    record_failure(service, target, ADMITTED_CLOSED)
    assert seen() == (CircuitState.CLOSED, False)
    record_failure(service, target, ADMITTED_CLOSED)
    assert seen() == (CircuitState.OPEN, True)
    assert store.get(circuit_open_key(target.id)) is not None
    assert backend.wait_until_gone(store, circuit_open_key(target.id), service.circuit_recovery_seconds)
    assert seen() == (CircuitState.HALF_OPEN, False)  # the balancer may choose it; before_call rations probes
    record_success(service, target, before_call(service, target))
    assert seen() == (CircuitState.CLOSED, False)


# --- shared across processes (Redis) ---------------------------------------------------------


def run_worker(args: list[str], prefix: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "REDIS_URL": REDIS_TEST_URL,
        "GATEWAY_STATE_PREFIX": prefix,
        "GATEWAY_DATA_DIR": str(tmp_path),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.routing.circuit_worker", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def worker_answer(worker: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = worker.communicate(timeout=WORKER_TIMEOUT_SECONDS)
    assert worker.returncode == 0, stderr
    return json.loads(stdout)


def test_failures_from_two_processes_open_one_shared_breaker(tmp_path: Path) -> None:
    """Each process records half the threshold: only the shared count can reach it."""
    redis_backend = Backend("redis")
    prefix = unique_prefix()
    store = redis_backend.make_store(prefix)
    per_process = 50
    service, target = make_service(threshold=2 * per_process), make_target()
    service_json = json.dumps(dataclasses.asdict(service))
    try:
        workers = [
            run_worker(["fail", service_json, str(target.id), str(per_process), "2"], prefix, tmp_path)
            for _ in range(2)
        ]
        answers = [worker_answer(worker) for worker in workers]
        assert sum(answer["opened"] for answer in answers) == 1
        assert circuit_state(target.id, store=store) == CircuitState.OPEN
        assert retry_after_matches_long_recovery(refusal(service, target, store).headers, "redis")
    finally:
        redis_backend.cleanup()


def test_breaker_opened_here_is_open_in_another_process(tmp_path: Path) -> None:
    redis_backend = Backend("redis")
    prefix = unique_prefix()
    store = redis_backend.make_store(prefix)
    service, target = make_service(threshold=2), make_target()
    service_json = json.dumps(dataclasses.asdict(service))
    try:
        assert worker_answer(run_worker(["look", service_json, str(target.id)], prefix, tmp_path)) == {
            "state": "closed",
            "refusal": None,
        }
        trip(service, target, store)
        seen = worker_answer(run_worker(["look", service_json, str(target.id)], prefix, tmp_path))
        assert seen["state"] == "open"
        assert (seen["refusal"]["status"], seen["refusal"]["code"]) == (503, "circuit_open")
        assert list(seen["refusal"]["headers"]) == [RETRY_AFTER_HEADER]
        assert retry_after_matches_long_recovery(seen["refusal"]["headers"], "redis")
    finally:
        redis_backend.cleanup()
