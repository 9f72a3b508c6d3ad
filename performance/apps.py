from django.apps import AppConfig


class PerformanceConfig(AppConfig):
    name = "performance"
    verbose_name = "Performance"

    def ready(self) -> None:
        from performance import signals  # noqa: F401  (config-version bumps for cache policies)
