"""Start-up checks: the token lifetimes are part of the contract, not a tuning knob."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

ACCESS_LIFETIME = timedelta(hours=1)
REFRESH_LIFETIME = timedelta(days=7)


@register()
def token_lifetimes_are_fixed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    jwt_settings = getattr(settings, "SIMPLE_JWT", {})
    errors: list[CheckMessage] = []
    fixed = (
        ("ACCESS_TOKEN_LIFETIME", ACCESS_LIFETIME, "authn.E001"),
        ("REFRESH_TOKEN_LIFETIME", REFRESH_LIFETIME, "authn.E002"),
    )
    for name, required, check_id in fixed:
        if jwt_settings.get(name) != required:
            errors.append(
                Error(
                    f"SIMPLE_JWT[{name!r}] is {jwt_settings.get(name)!r}; it must be exactly {required}.",
                    hint="Access tokens live 1 hour and refresh tokens 7 days; neither is configurable.",
                    id=check_id,
                )
            )
    if jwt_settings.get("ALGORITHM") != "HS256":
        errors.append(Error("SIMPLE_JWT['ALGORITHM'] must be HS256.", id="authn.E003"))
    return errors


@register()
def public_url_is_set_in_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The public URL is the token issuer, the audience external tokens must name, and where a
    401 sends MCP clients; the local default is wrong for anyone but a local client."""
    if settings.IS_PRODUCTION and settings.GATEWAY_PUBLIC_URL.startswith(("http://127.0.0.1", "http://localhost")):
        return [
            Warning(
                f"GATEWAY_PUBLIC_URL is {settings.GATEWAY_PUBLIC_URL!r} with GATEWAY_ENV=production.",
                hint="Set it to the URL clients reach the gateway at, e.g. https://mcp.example.com: it is the "
                "issuer of the gateway's tokens and the resource named in /.well-known/oauth-protected-resource.",
                id="authn.W001",
            )
        ]
    return []
