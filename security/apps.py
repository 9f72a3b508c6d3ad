from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from security import signals  # noqa: F401  (registers the rate-limit policy signal handlers)
