"""Performance settings, read through properties so ``override_settings`` works in tests."""

from __future__ import annotations

from django.conf import settings


class PerformanceSettings:
    @property
    def pool_maxsize(self) -> int:
        """Connections kept per upstream origin."""
        return int(settings.GATEWAY_POOL_MAXSIZE)

    @property
    def pool_num_pools(self) -> int:
        """Upstream origins kept pooled at once (least recently used are closed first)."""
        return int(settings.GATEWAY_POOL_NUM_POOLS)


    @property
    def max_in_flight(self) -> int:
        """Proxied exchanges one process serves at once before answering 503."""
        return int(settings.GATEWAY_MAX_IN_FLIGHT)


performance_settings = PerformanceSettings()
