"""python manage.py seed_demo: route /mcp/demo to the bundled demo MCP server (idempotent)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from routing.provisioning import provision_route

DEMO_ROUTE_NAME = "demo"
DEMO_PATH = "/mcp/demo"


class Command(BaseCommand):
    help = "Route /mcp/demo to the bundled demo MCP server."

    def handle(self, *args: Any, **options: Any) -> None:
        # Open, so a first client connects with no setup; every route an operator adds
        # requires a credential unless opened explicitly.
        result = provision_route(
            DEMO_PATH, [settings.GATEWAY_DEMO_UPSTREAM], name=DEMO_ROUTE_NAME, open_to_anonymous=True
        )
        state = "created" if result.created else "already present"
        self.stdout.write(f"Demo route {DEMO_PATH} -> {settings.GATEWAY_DEMO_UPSTREAM} ({state})")
