"""Security settings, read through properties so ``override_settings`` works in tests."""

from __future__ import annotations

from django.conf import settings


class SecuritySettings:
    @property
    def max_body_bytes(self) -> int:
        return int(settings.GATEWAY_MAX_BODY_BYTES)

    @property
    def max_header_bytes(self) -> int:
        return int(settings.GATEWAY_MAX_HEADER_BYTES)

    @property
    def max_header_count(self) -> int:
        return int(settings.GATEWAY_MAX_HEADER_COUNT)

    @property
    def max_url_bytes(self) -> int:
        return int(settings.GATEWAY_MAX_URL_BYTES)


security_settings = SecuritySettings()
