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

    @property
    def allowed_origins(self) -> list[str]:
        """Browser origins allowed cross-origin: CORS and the MCP Origin check share the list."""
        return list(settings.CORS_ALLOWED_ORIGINS)

    @property
    def max_json_depth(self) -> int:
        return int(settings.GATEWAY_MAX_JSON_DEPTH)

    @property
    def injection_max_nodes(self) -> int:
        return int(settings.GATEWAY_INJECTION_MAX_NODES)

    @property
    def default_ip_rate_limit(self) -> str:
        """A "limit/window_seconds" pair applied per client IP; "0" when off."""
        return str(settings.GATEWAY_DEFAULT_IP_RATE_LIMIT)

    @property
    def rate_limit_failure_mode(self) -> str:
        """While Redis is down, "open" limits per process and "closed" answers 503."""
        return str(settings.GATEWAY_RATE_LIMIT_FAILURE_MODE)

    @property
    def rate_limit_trusted_proxies(self) -> int:
        return int(settings.GATEWAY_RATE_LIMIT_TRUSTED_PROXIES)

    @property
    def admin_login_rate_limit(self) -> str:
        return str(settings.GATEWAY_ADMIN_LOGIN_RATE_LIMIT)


security_settings = SecuritySettings()
