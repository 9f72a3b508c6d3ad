"""python manage.py add_route PATH UPSTREAM_URL [UPSTREAM_URL ...] [--name] [--kind] [--lb] [--open]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.models import LoadBalancingPolicy, ServiceKind
from routing.provisioning import ProvisioningError, provision_route


class Command(BaseCommand):
    help = "Put one or more upstream servers behind the gateway at PATH (service, targets and route in one step)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Gateway path, e.g. /mcp/github")
        parser.add_argument("upstream_urls", nargs="+", metavar="UPSTREAM_URL")
        parser.add_argument("--name", default="", help="Route and service name (default: from the path)")
        parser.add_argument("--kind", default=ServiceKind.MCP, choices=ServiceKind.values)
        parser.add_argument("--lb", default=LoadBalancingPolicy.ROUND_ROBIN, choices=LoadBalancingPolicy.values)
        parser.add_argument(
            "--open", action="store_true", help="Let callers without a credential in (default: a JWT or API key is required)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = provision_route(
                options["path"],
                options["upstream_urls"],
                name=options["name"],
                kind=options["kind"],
                lb_policy=options["lb"],
                open_to_anonymous=options["open"],
            )
        except ProvisioningError as exc:
            raise CommandError(str(exc)) from exc
        route, service = result.route, result.service
        verb = "Created" if result.created else "Route already exists:"
        access = "open to anonymous callers" if route.allow_anonymous else "credential required"
        self.stdout.write(
            f"{verb} route {route.name!r}: {route.path} -> service {service.name!r} ({service.kind}, {service.lb_policy}, {access})"
        )
        for url in service.targets.values_list("url", flat=True):
            marker = "added" if url in result.targets_added else "kept"
            self.stdout.write(f"  target {url} ({marker})")
