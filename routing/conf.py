"""Routing settings, read through properties so ``override_settings`` works in tests."""

from __future__ import annotations

from django.conf import settings


class RoutingSettings:
    @property
    def config_poll_interval(self) -> float:
        """Seconds between checks of the shared config version; 0 disables the watcher."""
        return float(settings.GATEWAY_CONFIG_POLL_INTERVAL)


    @property
    def stream_keepalive_seconds(self) -> float:
        """How often a silent event stream gets a comment line (to notice clients that left)."""
        return float(settings.GATEWAY_STREAM_KEEPALIVE_SECONDS)


routing_settings = RoutingSettings()
