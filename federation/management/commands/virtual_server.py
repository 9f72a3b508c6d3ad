"""python manage.py virtual_server apply|approve|status: virtual servers from the command line.

    manage.py virtual_server apply spec.json      # create or update one virtual server
    manage.py virtual_server approve tools        # approve its members' current tool definitions
    manage.py virtual_server status tools         # approvals and pinning alerts, as JSON

A spec names the virtual server, its members (an existing MCP service, or one made from
``url``), their prefixes and rules; members and rules not in the spec are removed:

    {"name": "tools", "pinning_policy": "block", "route": {"allow_anonymous": false},
     "members": [{"service": "search", "url": "http://10.0.0.5:9100/mcp", "prefix": "search",
                  "rules": [{"kind": "tool", "name": "lookup", "exposed_name": "find",
                             "pinned_arguments": {"region": "eu"}}]}]}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from federation import approval
from federation.models import ApprovedTool, ExposureRule, Member, VirtualServer
from routing.models import Service, ServiceKind, Target

SERVER_FIELDS = ("path", "enabled", "instructions", "pinning_policy")
ROUTE_FIELDS = ("allow_anonymous", "tool_permissions", "required_permissions")
MEMBER_FIELDS = ("unlisted_items", "session_scope")
RULE_FIELDS = ("action", "exposed_name", "description", "pinned_arguments")


class Command(BaseCommand):
    help = "Create, approve and inspect virtual MCP servers."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("apply", help="Create or update a virtual server from a JSON spec.").add_argument("spec")
        actions.add_parser("approve", help="Approve the members' current tool definitions.").add_argument("name")
        actions.add_parser("status", help="Approvals and pinning alerts, as JSON.").add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "apply":
            spec = json.loads(Path(options["spec"]).read_text()) if options["spec"] != "-" else json.load(sys.stdin)
            server = apply_spec(spec)
            self.stdout.write(f"virtual server {server.name} serves {server.path}")
        elif action == "approve":
            server = _server(options["name"])
            outcome = approval.approve(server, approval.review(server).shown, "manage.py")
            if outcome.stale:
                raise CommandError("A member changed its tools during the approval; run it again.")
            self.stdout.write(f"approved {outcome.approved} change(s) of {server.name}")
        else:
            self.stdout.write(json.dumps(status_of(_server(options["name"])), indent=2, default=str))

def _server(name: str) -> VirtualServer:
    try:
        return VirtualServer.objects.get(name=name)
    except VirtualServer.DoesNotExist:
        raise CommandError(f"No virtual server is named {name!r}.") from None


def _validated(instance: Any, exclude: list[str] | None = None) -> Any:
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as error:
        raise CommandError(f"{type(instance).__name__}: {error.message_dict}") from None
    return instance


@transaction.atomic
def apply_spec(spec: dict[str, Any]) -> VirtualServer:
    server = VirtualServer.objects.filter(name=spec["name"]).first() or VirtualServer(name=spec["name"])
    for field in SERVER_FIELDS:
        if field in spec:
            setattr(server, field, spec[field])
    _validated(server).save()
    route = server.route
    assert route is not None  # saving made it
    for field in ROUTE_FIELDS:
        if field in spec.get("route", {}):
            setattr(route, field, spec["route"][field])
    route.save()
    kept = [_apply_member(server, position, member) for position, member in enumerate(spec.get("members", []))]
    server.members.exclude(pk__in=[member.pk for member in kept]).delete()
    return server


def _apply_member(server: VirtualServer, position: int, spec: dict[str, Any]) -> Member:
    service = Service.objects.filter(name=spec["service"]).first()
    if service is None:
        if "url" not in spec:
            raise CommandError(f"No service is named {spec['service']!r}; give its url to create it.")
        service = Service.objects.create(name=spec["service"], kind=ServiceKind.MCP)
    if "url" in spec and not service.targets.filter(url=spec["url"]).exists():
        Target.objects.create(service=service, url=spec["url"])
    member = Member.objects.filter(virtual_server=server, prefix=spec["prefix"]).first()
    member = member or Member(virtual_server=server, prefix=spec["prefix"])
    member.service = service
    member.position = position
    for field in MEMBER_FIELDS:
        if field in spec:
            setattr(member, field, spec[field])
    _validated(member, exclude=["virtual_server"]).save()
    kept = [_apply_rule(member, rule) for rule in spec.get("rules", [])]
    member.rules.exclude(pk__in=[rule.pk for rule in kept]).delete()
    return member


def _apply_rule(member: Member, spec: dict[str, Any]) -> ExposureRule:
    kind = spec.get("kind", "tool")
    rule = ExposureRule.objects.filter(member=member, kind=kind, name=spec["name"]).first()
    rule = rule or ExposureRule(member=member, kind=kind, name=spec["name"])
    for field in RULE_FIELDS:
        if field in spec:
            setattr(rule, field, spec[field])
    _validated(rule).save()
    return rule


def status_of(server: VirtualServer) -> dict[str, Any]:
    return {
        "name": server.name,
        "path": server.path,
        "pinning_policy": server.pinning_policy,
        "approved_at": server.approved_at,
        "approved": [
            {"member": a.member.prefix, "tool": a.tool_name, "digest": a.digest, "description": a.definition.get("description")}
            for a in ApprovedTool.objects.filter(member__virtual_server=server).select_related("member")
        ],
        "alerts": [
            {
                "member": alert.member.prefix,
                "tool": alert.tool_name,
                "kind": alert.kind,
                "held_back": alert.held_back,
                "description": alert.definition.get("description"),
                "resolved": alert.resolved_at is not None,
            }
            for alert in server.pinning_alerts.select_related("member")
        ],
    }
