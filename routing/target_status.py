"""Whether a target may take traffic right now, as every gateway process sees it.

Three independent verdicts live in the state store, one key each per target:
- ``down``: set by the active health checker after ``unhealthy_threshold`` failed checks,
  cleared after ``healthy_threshold`` good ones (``routing/health.py``);
- ``ejected``: set by passive checks on live traffic, expiring after the cool-down;
- ``circuit open``: set by the circuit breaker, expiring after its recovery time
  (``routing/circuit.py``); a half-open breaker lets the target be chosen and rations probes.

The balancer asks for all candidates' verdicts in one round trip (``get_many``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway_project.state import get_state_store


def down_key(target_id: int) -> str:
    return f"target:{target_id}:down"


def ejected_key(target_id: int) -> str:
    return f"target:{target_id}:ejected"


def circuit_open_key(target_id: int) -> str:
    return f"target:{target_id}:circuit:open"


def unavailable_target_ids(target_ids: Sequence[int]) -> set[int]:
    """The targets among ``target_ids`` that must not be chosen (down, ejected or open)."""
    keys: list[str] = []
    for target_id in target_ids:
        keys += [down_key(target_id), ejected_key(target_id), circuit_open_key(target_id)]
    verdicts = get_state_store().get_many(keys)
    return {
        target_id
        for index, target_id in enumerate(target_ids)
        if any(verdict is not None for verdict in verdicts[index * 3 : index * 3 + 3])
    }


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """What the hot path currently believes about a target (for admin and dashboard)."""

    down: bool
    ejected: bool
    circuit: str
    in_flight: int

    @property
    def summary(self) -> str:
        if self.down:
            return "down (failed active checks)"
        if self.ejected:
            return "ejected (failing live traffic)"
        if self.circuit != "closed":
            return f"circuit {self.circuit.replace('_', '-')}"
        return "serving"


def live_statuses(target_ids: Sequence[int]) -> dict[int, LiveStatus]:
    """Every verdict about these targets, in two state-store round trips."""
    from routing.balancing import in_flight_key
    from routing.circuit import circuit_states

    store = get_state_store()
    values = store.get_many([key for t in target_ids for key in (down_key(t), ejected_key(t), in_flight_key(t))])
    circuits = circuit_states(target_ids, store=store)
    return {
        target_id: LiveStatus(
            down=values[3 * index] is not None,
            ejected=values[3 * index + 1] is not None,
            circuit=circuits[target_id].value,
            in_flight=int(values[3 * index + 2] or 0),
        )
        for index, target_id in enumerate(target_ids)
    }
