"""System checks for virtual servers' settings (``federation.E0xx``)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from federation.conf import federation_settings


@register()
def check_federation_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if federation_settings.page_size < 1:
        errors.append(Error("GATEWAY_FEDERATION_PAGE_SIZE must be at least 1.", id="federation.E001"))
    if federation_settings.refresh_every_seconds >= federation_settings.list_ttl_seconds:
        errors.append(
            Error(
                "GATEWAY_FEDERATION_REFRESH_SECONDS must be shorter than GATEWAY_FEDERATION_LIST_TTL_SECONDS, "
                "or member lists lapse between refreshes and requests wait for members.",
                id="federation.E002",
            )
        )
    if federation_settings.event_poll_seconds <= 0:
        errors.append(Error("GATEWAY_FEDERATION_EVENT_POLL_SECONDS must be positive.", id="federation.E003"))
    return errors
