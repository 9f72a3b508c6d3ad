"""Choosing a target of a service for one request: five load-balancing policies.

Every policy first drops targets that must not take traffic (disabled ones never reach the
snapshot; down, ejected and open-circuit ones are dropped here in one state-store round trip)
and the ones this request already tried. Counters that must agree across gateway processes
(round-robin positions, in-flight requests) live in the state store; latency averages are
per process, since each process measures its own requests.

    >>> target = choose_target(service)            # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from functools import lru_cache

from gateway_project.errors import NoTargetAvailable
from gateway_project.state import StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.models import LoadBalancingPolicy
from routing.snapshot import ServiceConfig, TargetConfig
from routing.target_status import unavailable_target_ids

# Share of requests that response_time sends to a random target, so a target that was slow
# (or just recovered) is measured again and can win its traffic back.
EXPLORATION_RATE = 0.1
# Weight of the newest latency sample in the moving average.
LATENCY_SMOOTHING = 0.3
# health_based prefers targets whose last good check is younger than this many intervals.
FRESH_CHECK_INTERVALS = 2.0

Policy = Callable[[ServiceConfig, Sequence[TargetConfig]], TargetConfig]


def in_flight_key(target_id: int) -> str:
    return f"target:{target_id}:in_flight"


def checked_ok_at_key(target_id: int) -> str:
    """When the active checker last saw the target healthy (seconds since the epoch)."""
    return f"target:{target_id}:checked_ok_at"


_local_positions: dict[str, itertools.count[int]] = {}


def _next_position(service: ServiceConfig, counter: str) -> int:
    """A position shared by every process; a per-process one while the store is down."""
    key = f"lb:{service.id}:{counter}"
    try:
        return get_state_store().incr(key) - 1
    except StateStoreUnavailable as error:
        note_state_store_down("load balancing", error)
        return next(_local_positions.setdefault(key, itertools.count()))


def round_robin(service: ServiceConfig, candidates: Sequence[TargetConfig]) -> TargetConfig:
    return candidates[_next_position(service, "rr") % len(candidates)]


@lru_cache(maxsize=256)
def smooth_weighted_sequence(weights: tuple[int, ...]) -> tuple[int, ...]:
    """nginx's smooth weighted round robin, unrolled into one cycle of indexes.

    Weights 5, 1, 1 give a a b a c a a rather than a a a a a b c, so a heavy target's turns are
    spread out. Unrolling lets processes share the position through one shared counter.
    """
    divisor = math.gcd(*weights)
    reduced = [w // divisor for w in weights]
    current = [0] * len(reduced)
    total = sum(reduced)
    sequence = []
    for _ in range(total):
        for index, weight in enumerate(reduced):
            current[index] += weight
        chosen = max(range(len(reduced)), key=lambda i: current[i])
        current[chosen] -= total
        sequence.append(chosen)
    return tuple(sequence)


def weighted_round_robin(service: ServiceConfig, candidates: Sequence[TargetConfig]) -> TargetConfig:
    sequence = smooth_weighted_sequence(tuple(t.weight for t in candidates))
    return candidates[sequence[_next_position(service, "wrr") % len(sequence)]]


def least_connections(service: ServiceConfig, candidates: Sequence[TargetConfig]) -> TargetConfig:
    """The target with the fewest requests in flight (streams count until they close)."""
    try:
        counts = get_state_store().get_many([in_flight_key(t.id) for t in candidates])
    except StateStoreUnavailable as error:
        note_state_store_down("least connections", error)
        return random.choice(candidates)
    loads = [int(count or 0) for count in counts]
    fewest = min(loads)
    return random.choice([t for t, load in zip(candidates, loads) if load == fewest])


class LatencyAverages:
    """Per-process moving averages of time to response headers, per target."""

    def __init__(self) -> None:
        self._averages: dict[int, float] = {}
        self._lock = threading.Lock()

    def record(self, target_id: int, milliseconds: float) -> None:
        with self._lock:
            previous = self._averages.get(target_id)
            self._averages[target_id] = (
                milliseconds if previous is None else previous + LATENCY_SMOOTHING * (milliseconds - previous)
            )

    def get(self, target_id: int) -> float | None:
        return self._averages.get(target_id)

    def clear(self) -> None:
        with self._lock:
            self._averages.clear()


latencies = LatencyAverages()


def response_time(service: ServiceConfig, candidates: Sequence[TargetConfig]) -> TargetConfig:
    """The fastest target on average; unmeasured targets first; some exploration."""
    unmeasured = [t for t in candidates if latencies.get(t.id) is None]
    if unmeasured:
        return random.choice(unmeasured)
    if random.random() < EXPLORATION_RATE:
        return random.choice(candidates)
    return min(candidates, key=lambda t: latencies.get(t.id) or 0.0)


def health_based(service: ServiceConfig, candidates: Sequence[TargetConfig]) -> TargetConfig:
    """Healthy targets only (already filtered), preferring those with a recent good check."""
    try:
        checked = get_state_store().get_many([checked_ok_at_key(t.id) for t in candidates])
    except StateStoreUnavailable as error:
        note_state_store_down("health-based balancing", error)
        return round_robin(service, candidates)
    horizon = time.time() - FRESH_CHECK_INTERVALS * service.health_check_interval
    fresh = [t for t, at in zip(candidates, checked) if at is not None and float(at) >= horizon]
    return round_robin(service, fresh or candidates)


POLICIES: dict[str, Policy] = {
    LoadBalancingPolicy.ROUND_ROBIN: round_robin,
    LoadBalancingPolicy.WEIGHTED_ROUND_ROBIN: weighted_round_robin,
    LoadBalancingPolicy.LEAST_CONNECTIONS: least_connections,
    LoadBalancingPolicy.RESPONSE_TIME: response_time,
    LoadBalancingPolicy.HEALTH_BASED: health_based,
}


def choose_target(service: ServiceConfig, *, exclude: Collection[int] = ()) -> TargetConfig:
    """A target for one attempt; raise NoTargetAvailable when none may take traffic."""
    candidates = [t for t in service.targets if t.id not in exclude]
    if candidates:
        try:
            unavailable = unavailable_target_ids([t.id for t in candidates])
        except StateStoreUnavailable as error:
            note_state_store_down("target availability", error)
            unavailable = set()  # without verdicts, every enabled target is worth a try
        candidates = [t for t in candidates if t.id not in unavailable]
    if not candidates:
        raise NoTargetAvailable(f"Service {service.name} has no healthy target available")
    return POLICIES[service.lb_policy](service, candidates)


def tracks_in_flight(service: ServiceConfig) -> bool:
    """Only least_connections needs shared in-flight counts; others skip the two writes."""
    return service.lb_policy == LoadBalancingPolicy.LEAST_CONNECTIONS


def start_in_flight(target: TargetConfig) -> Callable[[], None]:
    """Count one request in flight on ``target``; call the returned function when it ends."""
    store = get_state_store()
    key = in_flight_key(target.id)
    try:
        store.incr(key)
    except StateStoreUnavailable as error:
        note_state_store_down("in-flight counting", error)
        return lambda: None

    def finish() -> None:
        store.incr(key, -1)

    return finish
