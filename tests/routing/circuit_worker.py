"""Another gateway process for the circuit-breaker tests: records failures, or reports what it sees.

    python -m tests.routing.circuit_worker fail '<service json>' <target id> <failures> <workers>
    python -m tests.routing.circuit_worker look '<service json>' <target id>

The test sets DJANGO_SETTINGS_MODULE, REDIS_URL and GATEWAY_STATE_PREFIX, so this process's own
state store is the same Redis key space as the test's. The answer is one JSON line on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import django

START_TIMEOUT_SECONDS = 30.0


def service_from_json(raw: str) -> Any:
    """Rebuild the ServiceConfig the test serialised with ``dataclasses.asdict``."""
    from routing.snapshot import ServiceConfig, TargetConfig

    fields = json.loads(raw)
    fields["targets"] = tuple(TargetConfig(**target) for target in fields["targets"])
    return ServiceConfig(**fields)


def wait_for_each_other(workers: int) -> None:
    """Start recording together, so the two processes' failures interleave."""
    from gateway_project.state import get_state_store

    store = get_state_store()
    store.incr("circuit-worker:started")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while int(store.get("circuit-worker:started") or 0) < workers:
        if time.monotonic() > deadline:
            sys.exit("the other worker never started")
        time.sleep(0.005)


def record_failures(service: Any, target_id: int, failures: int, workers: int) -> dict[str, Any]:
    from routing.circuit import ADMITTED_CLOSED, record_failure

    target = next(t for t in service.targets if t.id == target_id)
    wait_for_each_other(workers)
    opened = sum(record_failure(service, target, ADMITTED_CLOSED) for _ in range(failures))
    return {"opened": opened}


def look(service: Any, target_id: int) -> dict[str, Any]:
    from routing.circuit import CircuitOpen, before_call, circuit_state

    target = next(t for t in service.targets if t.id == target_id)
    seen: dict[str, Any] = {"state": str(circuit_state(target_id)), "refusal": None}
    try:
        before_call(service, target)
    except CircuitOpen as refusal:
        seen["refusal"] = {"status": refusal.status, "code": refusal.code, "headers": refusal.headers}
    return seen


def main(argv: list[str]) -> None:
    django.setup()
    mode, service, target_id = argv[0], service_from_json(argv[1]), int(argv[2])
    if mode == "fail":
        answer = record_failures(service, target_id, failures=int(argv[3]), workers=int(argv[4]))
    else:
        answer = look(service, target_id)
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1:])
