"""Federation settings, read through properties so ``override_settings`` works in tests.

Read with a default until gateway_project/settings.py names them (see the docstrings for the
environment variables).
"""

from __future__ import annotations

from django.conf import settings


class FederationSettings:
    @property
    def list_ttl_seconds(self) -> float:
        """GATEWAY_FEDERATION_LIST_TTL_SECONDS: how long a member's fetched lists are served
        before they are fetched again (the worker refreshes them well before)."""
        return float(getattr(settings, "GATEWAY_FEDERATION_LIST_TTL_SECONDS", 60.0))

    @property
    def refresh_every_seconds(self) -> float:
        """GATEWAY_FEDERATION_REFRESH_SECONDS: the worker's schedule for refreshing member lists."""
        return float(getattr(settings, "GATEWAY_FEDERATION_REFRESH_SECONDS", 20.0))

    @property
    def down_retry_seconds(self) -> float:
        """GATEWAY_FEDERATION_DOWN_RETRY_SECONDS: a member found down is asked again after this
        (meanwhile its items are left out, without waiting on it per request)."""
        return float(getattr(settings, "GATEWAY_FEDERATION_DOWN_RETRY_SECONDS", 5.0))

    @property
    def page_size(self) -> int:
        """GATEWAY_FEDERATION_PAGE_SIZE: items per page of tools/list, prompts/list, resources/list."""
        return int(getattr(settings, "GATEWAY_FEDERATION_PAGE_SIZE", 100))

    @property
    def event_poll_seconds(self) -> float:
        """GATEWAY_FEDERATION_EVENT_POLL_SECONDS: how often an open client event stream checks
        whether the lists it serves changed (one small state-store read)."""
        return float(getattr(settings, "GATEWAY_FEDERATION_EVENT_POLL_SECONDS", 0.5))

    @property
    def fetch_workers(self) -> int:
        """GATEWAY_FEDERATION_FETCH_WORKERS: threads per process asking members for their lists."""
        return int(getattr(settings, "GATEWAY_FEDERATION_FETCH_WORKERS", 8))

    @property
    def session_ttl_seconds(self) -> int:
        """The client sessions' sliding timeout: the gateway's MCP session TTL (30 min)."""
        return int(settings.GATEWAY_MCP_SESSION_TTL)


federation_settings = FederationSettings()
