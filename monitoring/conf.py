"""Monitoring settings, read through properties so ``override_settings`` works in tests.

Until the settings module names them, each is read with its default here (the only place).
"""

from __future__ import annotations

from django.conf import settings

DEFAULT_INTERVAL_SECONDS = 10


class MonitoringSettings:
    @property
    def interval_seconds(self) -> int:
        """How often each process moves its metrics into the store; also the width of one
        point of the time series (``GATEWAY_METRICS_INTERVAL_SECONDS``)."""
        return int(getattr(settings, "GATEWAY_METRICS_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS))

    @property
    def metrics_token(self) -> str:
        """Bearer token that may read /metrics besides a staff session; empty: staff only
        (``GATEWAY_METRICS_TOKEN``)."""
        return str(getattr(settings, "GATEWAY_METRICS_TOKEN", ""))

    @property
    def background_flush(self) -> bool:
        """Start the per-process flusher thread on the first recorded exchange
        (``GATEWAY_METRICS_BACKGROUND_FLUSH``); tests turn it off and flush explicitly."""
        return bool(getattr(settings, "GATEWAY_METRICS_BACKGROUND_FLUSH", True))


monitoring_settings = MonitoringSettings()
