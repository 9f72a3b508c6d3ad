"""Start-up checks: the token lifetimes are part of the contract, not a tuning knob."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

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
