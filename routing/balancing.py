"""Choosing a target of a service for one request.

This is round robin over the service's enabled targets; the other policies plug in here.
"""

from __future__ import annotations

import itertools
import threading

from gateway_project.errors import NoTargetAvailable
from routing.snapshot import ServiceConfig, TargetConfig

_counters: dict[int, itertools.count[int]] = {}
_counters_lock = threading.Lock()


def _next_index(service_id: int) -> int:
    counter = _counters.get(service_id)
    if counter is None:
        with _counters_lock:
            counter = _counters.setdefault(service_id, itertools.count())
    # next() on itertools.count is atomic under the GIL, so threads never share an index.
    return next(counter)


def choose_target(service: ServiceConfig) -> TargetConfig:
    if not service.targets:
        raise NoTargetAvailable(f"Service {service.name} has no enabled target")
    return service.targets[_next_index(service.id) % len(service.targets)]
