from django.apps import AppConfig


class GatewayProjectConfig(AppConfig):
    """The project itself as an app: start-up checks for the deployment shape."""

    name = "gateway_project"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from gateway_project import checks  # noqa: F401  (registers the checks)
