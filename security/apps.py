from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from security import signals  # noqa: F401  (config-version bumps for policies and API keys)
        from security.origin import route_allows_cors_origin

        # A route may allow browser origins on top of the gateway-wide CORS list.
        check_request_enabled.connect(route_allows_cors_origin, dispatch_uid="route_allows_cors_origin")
