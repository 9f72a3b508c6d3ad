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
