from django.apps import AppConfig


class AuthnConfig(AppConfig):
    name = "authn"
    verbose_name = "Authentication"

    def ready(self) -> None:
        from authn import checks, signals  # noqa: F401  (system checks; config-version bumps)
