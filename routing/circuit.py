"""The per-target circuit breaker: stop calling a target that keeps failing, then test it gently.

    closed --(circuit_failure_threshold failures within the window)--> open
    open --(circuit_recovery_seconds pass)--> half-open
    half-open --(a probe succeeds)--> closed
    half-open --(a probe fails)--> open again, for another recovery period

State lives only in the state store, so with Redis every gateway process sees one breaker per
target. Four keys per target:
- ``circuit_open_key`` (``routing/target_status.py``): present while open, expires after the
  recovery time; the balancer reads it to skip open targets;
- ``tripped_key``: the id of the current trip, never expires; present without the open key means
  half-open;
- ``failures_key``: failures counted in a window that starts at the first failure;
- ``probes_key``: half-open probe slots handed out. It expires after the recovery time, so a probe
  that never reports (its process crashed) frees its slot instead of wedging the breaker.

The caller brackets each upstream call and hands the admission back with the outcome:

    >>> admission = before_call(service, target)  # raises CircuitOpen while open
    >>> ...  # call the upstream
    >>> record_success(service, target, admission)  # or record_failure(...)

On the hot path (closed), ``before_call`` costs one read and ``record_success`` costs nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway_project.errors import GatewayError
from gateway_project.state import StateStore, get_state_store
from routing.snapshot import ServiceConfig, TargetConfig
from routing.target_status import circuit_open_key

RETRY_AFTER_HEADER = "Retry-After"
CIRCUIT_OPEN_DETAIL = "Service {service} is failing; calls to it are paused"
PROBES_BUSY_DETAIL = "Service {service} is being tested after failures; try again shortly"
# A call refused while half-open waits only for the probes already in flight, which usually
# answer within a second; the open state's Retry-After is the time the open flag has left.
HALF_OPEN_RETRY_AFTER_SECONDS = 1


class CircuitOpen(GatewayError):
    """Raised when a target's breaker is open, or half-open with every probe slot taken."""

    status = 503
    code = "circuit_open"
    title = "Upstream circuit open"


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Admission:
    """What ``before_call`` decided for one call; the caller passes it back with the outcome.

    ``probe_of`` is the id of the trip being probed when the call is a half-open probe, None when
    the breaker was closed. Carrying it lets a success on the closed path skip the store entirely,
    and makes a probe's verdict count only for the trip it probed: a slow probe cannot close a
    breaker that another probe has re-opened since.
    """

    probe_of: str | None = None

    @property
    def is_probe(self) -> bool:
        return self.probe_of is not None


ADMITTED_CLOSED = Admission()


def tripped_key(target_id: int) -> str:
    return f"target:{target_id}:circuit:tripped"


def failures_key(target_id: int) -> str:
    return f"target:{target_id}:circuit:failures"


def probes_key(target_id: int) -> str:
    return f"target:{target_id}:circuit:probes"


def before_call(service: ServiceConfig, target: TargetConfig, *, store: StateStore | None = None) -> Admission:
    """Admit a call to ``target`` or raise ``CircuitOpen`` without touching the network."""
    store = store or get_state_store()
    is_open, trip_id = store.get_many([circuit_open_key(target.id), tripped_key(target.id)])
    if is_open is not None:
        raise _open_refusal(service, target.id, store)
    if trip_id is None:
        return ADMITTED_CLOSED
    return _admit_probe(service, target.id, trip_id, store)


def record_success(
    service: ServiceConfig, target: TargetConfig, admission: Admission, *, store: StateStore | None = None
) -> None:
    """Close the breaker when this call probed the current trip; otherwise do nothing.

    Failures are counted in a window, not as a streak, so a success while closed has nothing to
    reset and the hot path never pays a write per success.
    """
    if admission.probe_of is None:
        return
    store = store or get_state_store()
    # Compare-and-delete: only a probe of the trip still in force may close the breaker.
    if store.delete_if_equals(tripped_key(target.id), admission.probe_of):
        store.delete(probes_key(target.id))
        store.delete(failures_key(target.id))


def record_failure(
    service: ServiceConfig, target: TargetConfig, admission: Admission, *, store: StateStore | None = None
) -> bool:
    """Count a failed call; True when this call opened the breaker (for logs and metrics).

    A failed probe re-opens at once. Any other failure (including a late answer to a call admitted
    before the breaker tripped) counts towards the threshold in the current window.
    """
    store = store or get_state_store()
    if admission.probe_of is not None and store.get(tripped_key(target.id)) == admission.probe_of:
        _trip(service, target.id, store)
        return True
    failures = store.incr(failures_key(target.id), ttl=service.circuit_window_seconds)
    # Exactly one caller sees the count hit the threshold (incr is atomic across processes), so a
    # burst of concurrent failures trips the breaker once. The trip deletes the counter.
    if failures != service.circuit_failure_threshold:
        return False
    _trip(service, target.id, store)
    return True


def circuit_state(target_id: int, *, store: StateStore | None = None) -> CircuitState:
    """The breaker's state as every process sees it (admin, dashboard)."""
    return circuit_states([target_id], store=store)[target_id]


def circuit_states(target_ids: Sequence[int], *, store: StateStore | None = None) -> dict[int, CircuitState]:
    """The states of several breakers in one round trip (a list page of targets)."""
    store = store or get_state_store()
    keys = [key for target_id in target_ids for key in (circuit_open_key(target_id), tripped_key(target_id))]
    values = store.get_many(keys)
    return {
        target_id: _state_from(is_open=values[2 * index], trip_id=values[2 * index + 1])
        for index, target_id in enumerate(target_ids)
    }


def refusal_if_all_open(service: ServiceConfig, *, store: StateStore | None = None) -> CircuitOpen | None:
    """When every target of the service has an open breaker: the refusal to answer with
    (Retry-After of the soonest to recover). None when something else made them unavailable."""
    store = store or get_state_store()
    states = circuit_states([t.id for t in service.targets], store=store)
    if not states or any(state is not CircuitState.OPEN for state in states.values()):
        return None
    refusals = [_open_refusal(service, target_id, store) for target_id in states]
    return min(refusals, key=lambda refusal: int(refusal.headers[RETRY_AFTER_HEADER]))


def _state_from(*, is_open: str | None, trip_id: str | None) -> CircuitState:
    if is_open is not None:
        return CircuitState.OPEN
    return CircuitState.CLOSED if trip_id is None else CircuitState.HALF_OPEN


def _admit_probe(service: ServiceConfig, target_id: int, trip_id: str, store: StateStore) -> Admission:
    """Hand out one of the half-open probe slots, or refuse when all are taken.

    The slot counter expires after the recovery time (from the first probe): a probe whose process
    died never reports, and waiting one recovery period before trying again is what an open
    breaker does anyway. Refused calls also bump the counter; that only matters until it expires.
    """
    taken = store.incr(probes_key(target_id), ttl=service.circuit_recovery_seconds)
    if taken > service.circuit_half_open_probes:
        raise CircuitOpen(
            PROBES_BUSY_DETAIL.format(service=service.name),
            headers={RETRY_AFTER_HEADER: str(HALF_OPEN_RETRY_AFTER_SECONDS)},
        )
    return Admission(probe_of=trip_id)


def _open_refusal(service: ServiceConfig, target_id: int, store: StateStore) -> CircuitOpen:
    # The open flag may expire between the read and here (ttl None): then retrying soon is right.
    remaining = store.ttl(circuit_open_key(target_id)) or 0.0
    retry_after = max(1, math.ceil(remaining))
    return CircuitOpen(CIRCUIT_OPEN_DETAIL.format(service=service.name), headers={RETRY_AFTER_HEADER: str(retry_after)})


def _trip(service: ServiceConfig, target_id: int, store: StateStore) -> None:
    """Open the breaker for one recovery period, as a new trip.

    The open flag is written before the trip id, so no reader ever sees "tripped but not open"
    (half-open) in between. A fresh id per trip retires the probes of any earlier trip.
    """
    store.set(circuit_open_key(target_id), "1", ttl=service.circuit_recovery_seconds)
    store.set(tripped_key(target_id), uuid.uuid4().hex)
    store.delete(failures_key(target_id))
    store.delete(probes_key(target_id))
