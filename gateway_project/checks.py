"""Start-up checks for the deployment shape (``python manage.py check``, and every start)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.compatibility, deploy=False)
def check_state_store_matches_process_count(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """In-process state is per process: several gateway processes must share Redis."""
    if settings.GATEWAY_WORKERS > 1 and not settings.REDIS_URL:
        return [
            Error(
                f"GATEWAY_WORKERS={settings.GATEWAY_WORKERS} but REDIS_URL is not set.",
                hint="In-process state (rate limits, sessions, config version) is per process; "
                "run one worker with threads, or set REDIS_URL so the workers share state.",
                id="gateway.E001",
            )
        ]
    return []


@register(Tags.security, deploy=False)
def check_production_hosts(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if settings.IS_PRODUCTION and settings.DEBUG:
        return [Warning("DEBUG is on with GATEWAY_ENV=production.", id="gateway.W001")]
    return []
