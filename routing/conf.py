"""Routing settings, read through properties so ``override_settings`` works in tests."""

from __future__ import annotations

from django.conf import settings


class RoutingSettings:
    @property
    def config_poll_interval(self) -> float:
        """Seconds between checks of the shared config version; 0 disables the watcher."""
        return float(settings.GATEWAY_CONFIG_POLL_INTERVAL)


routing_settings = RoutingSettings()
