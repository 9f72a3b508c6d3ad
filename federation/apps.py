from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"
    verbose_name = "Virtual MCP servers"

    def ready(self) -> None:
        from federation import checks, signals  # noqa: F401  (registers checks and signal handlers)
