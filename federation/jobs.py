"""The worker's part in keeping virtual servers fresh (``gateway_project/worker.py``).

Every tick, each member service whose refresh lease this worker wins (one per
``GATEWAY_FEDERATION_REFRESH_SECONDS``, deployment-wide) has its lists fetched again; then
every virtual server's catalog is brought up to date, so pinning alerts fire and members'
event streams are listened to even while no client is connected.
"""

from __future__ import annotations

import logging

from federation import member_lists, watch
from federation.catalog import current_catalog
from federation.conf import federation_settings
from federation.snapshot import get_federation_snapshot
from gateway_project.state import StateStoreUnavailable, get_state_store

logger = logging.getLogger("gateway.worker")


def _take_refresh_lease(service_id: int) -> bool:
    try:
        return get_state_store().set_if_absent(
            f"federation:refresh-lease:{service_id}", "1", ttl=federation_settings.refresh_every_seconds
        )
    except StateStoreUnavailable:
        return False


def refresh_virtual_servers() -> None:
    snapshot = get_federation_snapshot()
    due = [service for service in snapshot.member_services.values() if _take_refresh_lease(service.id)]
    for lists in member_lists.refresh_many(due):
        if lists.up:
            watch.ensure_watching(snapshot.member_services[lists.service_id], lists.capabilities)
    for config in snapshot.by_service_id.values():
        current_catalog(config)
