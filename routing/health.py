"""Active and passive health checks: which targets deserve traffic.

Active checks run in the background worker (``manage.py gateway_worker``): once per
``health_check_interval`` each enabled target of a service is probed (``routing/probes.py``).
Consecutive results are counted in the state store: ``unhealthy_threshold`` failures in a row set
the target's ``down`` key (``routing.target_status``), which every gateway process's balancer
reads; ``healthy_threshold`` successes in a row clear it. The verdict is also written to the
Target row with ``queryset.update()``: a ``save()`` would bump the config version and make every
gateway process rebuild its snapshot after every check.

Passive checks ride on live traffic: forwarding reports connect failures and 5xx answers with
``record_passive_failure``; ``passive_failure_threshold`` of them within 10 s eject the target for
``passive_ejection_seconds`` (a key that simply expires). Successes write nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from gateway_project.state import StateStore, StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.balancing import checked_ok_at_key
from routing.models import Service, Target
from routing.probes import ProbeResult, probe_target
from routing.snapshot import ServiceConfig, TargetConfig, service_config
from routing.target_status import down_key, ejected_key

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

MAX_PROBE_THREADS = 16
PASSIVE_WINDOW_SECONDS = 10.0
# A streak counter not extended for this many intervals is stale evidence (the worker stopped).
STREAK_IDLE_INTERVALS = 3
DOWN = "1"
EJECTED = "1"


# --- thresholds --------------------------------------------------------------------------------


def passes_key(target_id: int) -> str:
    return f"target:{target_id}:health:passes"


def fails_key(target_id: int) -> str:
    return f"target:{target_id}:health:fails"


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    changed: bool


def record_active_result(
    service: ServiceConfig, target: TargetConfig, ok: bool, store: StateStore | None = None
) -> Verdict:
    """Count one active result in the target's streak and move the verdict when a threshold is met.

    Per service, the health lease makes this single-writer, so read-then-write is safe here.
    """
    store = store or get_state_store()
    down = store.get(down_key(target.id)) is not None
    if not down and not target.healthy:
        # The row remembers "unhealthy" across a lost store (in-process memory restarted, Redis flushed).
        store.set(down_key(target.id), DOWN)
        down = True
    streak = _extend_streak(service, target, ok, store)
    if ok and down and streak >= service.healthy_threshold:
        store.delete(down_key(target.id))
        return Verdict(healthy=True, changed=True)
    if not ok and not down and streak >= service.unhealthy_threshold:
        store.set(down_key(target.id), DOWN)  # no ttl: only good checks bring a target back
        return Verdict(healthy=False, changed=True)
    return Verdict(healthy=not down, changed=False)


def _extend_streak(service: ServiceConfig, target: TargetConfig, ok: bool, store: StateStore) -> int:
    streak_key, broken_key = (passes_key, fails_key) if ok else (fails_key, passes_key)
    store.delete(broken_key(target.id))
    count = store.incr(streak_key(target.id))
    store.expire(streak_key(target.id), _idle_ttl(service))
    return count


def _idle_ttl(service: ServiceConfig) -> float:
    return STREAK_IDLE_INTERVALS * service.health_check_interval + service.health_check_timeout


# --- passive checks ----------------------------------------------------------------------------


def passive_failures_key(target_id: int) -> str:
    return f"target:{target_id}:passive:failures"


def record_passive_failure(
    service: ServiceConfig,
    target: TargetConfig,
    store: StateStore | None = None,
    *,
    window_seconds: float = PASSIVE_WINDOW_SECONDS,
) -> bool:
    """Count a connect failure or 5xx seen on live traffic; True when this one ejected the target.

    ``passive_failure_threshold`` failures within ``window_seconds`` (a window opened by the first
    failure) eject the target for ``passive_ejection_seconds``; the key expires by itself. Failures
    of requests still in flight to an ejected target do not extend the cool-down. Best effort: an
    unreachable store loses the count (logged, throttled) rather than failing the caller's already
    failing request, so this never raises on the hot path.
    """
    store = store or get_state_store()
    key = passive_failures_key(target.id)
    try:
        if store.incr(key, ttl=window_seconds) < service.passive_failure_threshold:
            return False
        store.delete(key)
        return store.set_if_absent(ejected_key(target.id), EJECTED, ttl=service.passive_ejection_seconds)
    except StateStoreUnavailable as error:
        note_state_store_down("passive health checks", error)
        return False


# --- the worker's round ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthCheckOutcome:
    service: str
    target_id: int
    target_url: str
    result: ProbeResult
    healthy: bool  # the verdict after this check
    changed: bool  # this check moved the verdict


def this_worker_id() -> str:
    """Who holds a lease, for whoever inspects the store."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_key(service_id: int) -> str:
    return f"health:lease:{service_id}"


def take_health_lease(service_id: int, interval: float, worker_id: str, store: StateStore | None = None) -> bool:
    """True when this worker checks the service this interval; the lease is never released early,
    so however many workers run, on however many machines, a service is checked once per interval."""
    store = store or get_state_store()
    return store.set_if_absent(lease_key(service_id), worker_id, ttl=interval)


def run_due_health_checks(
    now: float, store: StateStore | None = None, *, worker_id: str | None = None
) -> list[HealthCheckOutcome]:
    """Check every service whose lease this worker wins; ``now`` (epoch seconds) stamps the rows.

    The leases, not local timers, decide what is due: each has the service's interval as its ttl.
    """
    store = store or get_state_store()
    worker_id = worker_id or this_worker_id()
    due = [
        service
        for service in _services_with_enabled_targets()
        if take_health_lease(service.id, service.health_check_interval, worker_id, store)
    ]
    return check_services(due, now=now, store=store)


def _services_with_enabled_targets() -> list[ServiceConfig]:
    rows = Service.objects.filter(targets__enabled=True).distinct().prefetch_related("targets")
    return [service_config(row) for row in rows]


def check_services(
    services: Sequence[ServiceConfig], *, now: float, store: StateStore | None = None, clock: Clock = time.monotonic
) -> list[HealthCheckOutcome]:
    """Probe every target of ``services`` at once, then count and record the results.

    Only the probes run in threads; counting and database writes stay in the calling thread,
    which owns the database connection (and, in tests, the transaction).
    """
    store = store or get_state_store()
    pairs = [(service, target) for service in services for target in service.targets]
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(len(pairs), MAX_PROBE_THREADS), thread_name_prefix="health-probe") as pool:
        results = list(pool.map(lambda pair: probe_target(pair[0], pair[1], clock=clock), pairs))
    checked_at = datetime.fromtimestamp(now, tz=timezone.utc)
    return [_record(service, target, result, store, checked_at) for (service, target), result in zip(pairs, results)]


def _record(
    service: ServiceConfig, target: TargetConfig, result: ProbeResult, store: StateStore, checked_at: datetime
) -> HealthCheckOutcome:
    verdict = record_active_result(service, target, result.ok, store)
    if result.ok:
        # The health_based balancer prefers targets with a recent good check (routing.balancing).
        store.set(checked_ok_at_key(target.id), repr(checked_at.timestamp()), ttl=_idle_ttl(service))
    # update(), never save(): no signal, so no config-version bump and no snapshot rebuilds.
    Target.objects.filter(pk=target.id).update(
        healthy=verdict.healthy,
        last_health_check=checked_at,
        response_time_ms=result.response_time_ms if result.ok else None,
    )
    return HealthCheckOutcome(service.name, target.id, target.url, result, verdict.healthy, verdict.changed)
