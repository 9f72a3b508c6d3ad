"""System checks for routing settings."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register

from routing.conf import routing_settings


@register(Tags.compatibility)
def check_config_poll_interval(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    interval = routing_settings.config_poll_interval
    if interval < 0:
        return [Error("GATEWAY_CONFIG_POLL_INTERVAL cannot be negative.", id="routing.E001")]
    if interval > 1:
        return [
            Warning(
                f"GATEWAY_CONFIG_POLL_INTERVAL={interval}s: config changes take longer than a second to apply.",
                id="routing.W001",
            )
        ]
    return []
