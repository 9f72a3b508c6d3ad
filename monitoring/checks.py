"""Start-up checks for the metrics settings."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from monitoring.conf import monitoring_settings

MIN_INTERVAL_SECONDS = 1
MAX_INTERVAL_SECONDS = 300
MIN_TOKEN_LENGTH = 24


@register()
def metrics_interval_is_sane(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        interval = monitoring_settings.interval_seconds
    except (TypeError, ValueError):
        interval = 0
    if MIN_INTERVAL_SECONDS <= interval <= MAX_INTERVAL_SECONDS:
        return []
    return [
        Error(
            "GATEWAY_METRICS_INTERVAL_SECONDS must be a whole number of seconds "
            f"from {MIN_INTERVAL_SECONDS} to {MAX_INTERVAL_SECONDS}.",
            hint="It is how often every process sends its counts, and the width of one point of the "
            "one-hour series; 10 is the default.",
            id="monitoring.E001",
        )
    ]


@register()
def metrics_token_is_long(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    token = monitoring_settings.metrics_token
    if not token or len(token) >= MIN_TOKEN_LENGTH:
        return []
    return [
        Warning(
            f"GATEWAY_METRICS_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters.",
            hint="Anyone holding it reads every route's, key's and tool's traffic; use a random value, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
            id="monitoring.W001",
        )
    ]
