"""The REST API of federation: virtual servers with their members and rules, their approvals and
pinning state, and the pinning alerts.

    /api/v1/virtual-servers/                 CRUD; members and their rules nested; ?enabled=&pinning_policy=
    /api/v1/virtual-servers/{id}/approve/    POST: approve the members' current tool definitions
    /api/v1/virtual-servers/{id}/status/     GET: approvals and pinning alerts (``virtual_server status``)
    /api/v1/pinning-alerts/                  read-only; ?virtual_server=<name>&kind=&held_back=&resolved=

A virtual server is saved through ``VirtualServer.save()``, as in the admin, so its own service and
route are made and kept with it (and removed with it). Members name their MCP service by name; a
write that carries ``members`` replaces the list: members are matched by service (an existing
member keeps its approvals when its prefix changes), rules by kind and name, and members and rules
left out are removed. Every object runs its model's ``full_clean()``, so the API refuses what the
admin refuses, with its messages. Approving and the status are the functions the admin and the
``virtual_server`` command use (``approval.py``, the command's ``status_of``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from federation import approval
from federation.management.commands.virtual_server import status_of
from federation.models import ExposureRule, Member, PinningAlert, VirtualServer
from gateway_project.api import Conflict
from gateway_project.api_models import CleanedModelSerializer, ConfigModelViewSet
from routing.models import Service, ServiceKind

STALE_APPROVAL = "A member changed its tools during the approval; nothing was approved. Try again."
NOT_MCP = "A member must be an MCP service."  # Member.clean()'s
DUPLICATE_PREFIX = "Each member needs its own prefix; {value} is given twice."
DUPLICATE_SERVICE = "A service can be a member once; {value} is given twice."
DUPLICATE_RULE = "One rule per item: {value} is given twice."
DUPLICATE_RENAME = "Another item of this virtual server is already renamed {value}."


class NestedCleanedSerializer(CleanedModelSerializer):
    """Runs the model's ``full_clean()`` on the object alone; its nested lists are checked by
    their own serializers and written by the parent."""

    nested: tuple[str, ...] = ()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        nested = {name: attrs.pop(name) for name in self.nested if name in attrs}
        attrs = super().validate(attrs)
        attrs.update(nested)
        return attrs


class ExposureRuleSerializer(NestedCleanedSerializer):
    """How one item of a member is exposed: included or not, renamed, re-described, arguments pinned."""

    class Meta:
        model = ExposureRule
        fields = ["id", "kind", "name", "action", "exposed_name", "description", "pinned_arguments"]
        read_only_fields = ["id"]
        validators: list[Any] = []  # (member, kind, name) is checked across the payload by the parent


class MemberSerializer(NestedCleanedSerializer):
    """An MCP service serving its items through the virtual server under a prefix, with its rules."""

    nested = ("rules",)
    service = serializers.SlugRelatedField(
        slug_field="name", queryset=Service.objects.all(), help_text="The MCP service's name."
    )
    rules = ExposureRuleSerializer(many=True, required=False, help_text="Replaces the member's rules when given.")

    class Meta:
        model = Member
        fields = ["id", "service", "prefix", "unlisted_items", "session_scope", "position", "rules"]
        read_only_fields = ["id"]
        validators: list[Any] = []  # prefixes and services are checked across the payload by the parent

    def validate_service(self, service: Service) -> Service:
        """The model's own message, before full_clean adds Django's about ``limit_choices_to``."""
        if service.kind != ServiceKind.MCP:
            raise serializers.ValidationError(NOT_MCP)
        return service


class VirtualServerSerializer(NestedCleanedSerializer):
    """One MCP endpoint aggregating its members, served through its own route (named like it)."""

    nested = ("members",)
    route = serializers.SlugRelatedField(
        slug_field="name", read_only=True, help_text="Its route's name: access settings are edited there."
    )
    members = MemberSerializer(many=True, required=False, help_text="Replaces the members when given.")

    class Meta:
        model = VirtualServer
        exclude = ["service"]
        read_only_fields = ["approved_at", "approved_by"]

    def validate_members(self, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        errors: list[str] = []
        errors += _duplicates([m.get("prefix", "") for m in members], DUPLICATE_PREFIX)
        errors += _duplicates([m["service"].name for m in members if "service" in m], DUPLICATE_SERVICE)
        rules = [rule for member in members for rule in member.get("rules", [])]
        for member in members:
            items = [f"{rule.get('kind', 'tool')} {rule.get('name', '')}" for rule in member.get("rules", [])]
            errors += _duplicates(items, DUPLICATE_RULE)
        renames = [f"{rule.get('kind', 'tool')}:{rule['exposed_name']}" for rule in rules if rule.get("exposed_name")]
        if self.instance is not None:  # members sent without rules keep theirs
            keeping = [m["service"].pk for m in members if "rules" not in m and "service" in m]
            kept = ExposureRule.objects.filter(member__virtual_server=self.instance, member__service_id__in=keeping)
            renames += [f"{kind}:{name}" for kind, name in kept.exclude(exposed_name="").values_list("kind", "exposed_name")]
        errors += [DUPLICATE_RENAME.format(value=name.split(":", 1)[1]) for name, n in Counter(renames).items() if n > 1]
        if errors:
            raise serializers.ValidationError(errors)
        return members

    def create(self, validated_data: dict[str, Any]) -> VirtualServer:
        members = validated_data.pop("members", [])
        server = VirtualServer(**validated_data)
        server.save()  # with its service and route
        write_members(server, members)
        return server

    def update(self, instance: VirtualServer, validated_data: dict[str, Any]) -> VirtualServer:
        members = validated_data.pop("members", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.save()
        if members is not None:
            write_members(instance, members)
        return instance


def _duplicates(values: list[str], message: str) -> list[str]:
    return [message.format(value=value) for value, n in Counter(values).items() if n > 1]


def write_members(server: VirtualServer, members: list[dict[str, Any]]) -> None:
    """Replace the server's members (matched by service) and their rules (by kind and name)."""
    existing = {member.service_id: member for member in server.members.all()}
    wanted = {fields["service"].pk for fields in members}
    server.members.exclude(service_id__in=wanted).delete()
    # Prefixes may be swapped between members: park the changing ones on a name no prefix can have.
    for fields in members:
        member = existing.get(fields["service"].pk)
        if member is not None and member.prefix != fields["prefix"]:
            Member.objects.filter(pk=member.pk).update(prefix=f"_{member.pk}")
    for position, fields in enumerate(members):
        fields = {"position": position, **fields}  # unless given: the order of the list
        rules = fields.pop("rules", None)
        member = existing.get(fields["service"].pk) or Member(virtual_server=server)
        for name, value in fields.items():
            setattr(member, name, value)
        member.save()
        if rules is not None:
            write_rules(member, rules)


def write_rules(member: Member, rules: list[dict[str, Any]]) -> None:
    existing = {(rule.kind, rule.name): rule for rule in member.rules.all()}
    kept: list[int] = []
    for fields in rules:
        key = (fields.get("kind", "tool"), fields["name"])
        rule = existing.get(key) or ExposureRule(member=member)
        for name, value in fields.items():
            setattr(rule, name, value)
        rule.save()
        kept.append(rule.pk)
    member.rules.exclude(pk__in=kept).delete()


class VirtualServerFilter(django_filters.FilterSet):
    class Meta:
        model = VirtualServer
        fields = ["enabled", "pinning_policy"]


# --- approval and status ---------------------------------------------------------------------------


class ApprovedChangeSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="The member's prefix.")
    tool = serializers.CharField(help_text="The member's own name for the tool.")
    exposed_name = serializers.CharField()
    status = serializers.ChoiceField(
        choices=[approval.CHANGED, approval.NEW, approval.REMOVED],
        help_text="changed and new: now approved; removed: its approval was dropped.",
    )
    digest = serializers.CharField(help_text="SHA-256 of the approved definition; empty when removed.")


class ApprovalResultSerializer(serializers.Serializer):
    approved = serializers.IntegerField(help_text="How many definitions changed hands (approved or dropped).")
    changes = ApprovedChangeSerializer(many=True)
    down = serializers.DictField(
        child=serializers.CharField(),
        help_text="Members that could not be asked (prefix: why); their approvals are kept as they were.",
    )
    approved_at = serializers.DateTimeField()
    approved_by = serializers.CharField()


class ApprovedToolStatusSerializer(serializers.Serializer):
    member = serializers.CharField()
    tool = serializers.CharField()
    digest = serializers.CharField()
    description = serializers.CharField(allow_null=True)


class AlertStatusSerializer(serializers.Serializer):
    member = serializers.CharField()
    tool = serializers.CharField()
    kind = serializers.CharField(help_text="changed or new.")
    held_back = serializers.BooleanField(help_text="Withheld from clients until approved (policy block).")
    description = serializers.CharField(allow_null=True)
    resolved = serializers.BooleanField()


class PinningStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    pinning_policy = serializers.CharField()
    approved_at = serializers.DateTimeField(allow_null=True)
    approved = ApprovedToolStatusSerializer(many=True, help_text="The approved definitions.")
    alerts = AlertStatusSerializer(many=True, help_text="Definitions found changed or new since approval.")
    held_back = serializers.ListField(
        child=serializers.CharField(), help_text="<prefix>:<tool> of the open alerts whose tool is held back."
    )
    pending = serializers.IntegerField(help_text="Open alerts: changes waiting for an approval.")


@extend_schema(tags=["federation"])
class VirtualServerViewSet(ConfigModelViewSet):
    """Virtual MCP servers: one endpoint serving several MCP services' tools, prompts and
    resources. Saving one makes and keeps its own service and route; deleting it removes them."""

    serializer_class = VirtualServerSerializer
    filterset_class = VirtualServerFilter

    def get_queryset(self) -> QuerySet[VirtualServer]:
        return VirtualServer.objects.select_related("route").prefetch_related("members__service", "members__rules")

    @extend_schema(
        request=None,
        responses={
            200: ApprovalResultSerializer,
            409: OpenApiResponse(description="A member changed its tools during the approval; nothing was approved."),
        },
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve every member's current tool definitions (fetched now), resolving the open
        alerts; members that cannot be asked keep their approvals."""
        server = self.get_object()
        current = approval.review(server)
        outcome = approval.approve(server, current.shown, request.user.get_username())
        if outcome.stale:
            raise Conflict(STALE_APPROVAL)
        changes = [
            {
                "member": tool.member_prefix,
                "tool": tool.tool_name,
                "exposed_name": tool.exposed_name,
                "status": tool.status,
                "digest": tool.digest,
            }
            for tool in current.pending
        ]
        return Response(
            {
                "approved": outcome.approved,
                "changes": changes,
                "down": current.down,
                "approved_at": server.approved_at,
                "approved_by": server.approved_by,
            }
        )

    @extend_schema(responses=PinningStatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request: Request, pk: str | None = None) -> Response:
        """Approvals and pinning alerts, as ``manage.py virtual_server status`` shows them, with
        the tools held back now and the number of changes waiting for an approval."""
        state = status_of(self.get_object())
        open_alerts = [alert for alert in state["alerts"] if not alert["resolved"]]
        state["held_back"] = [f"{alert['member']}:{alert['tool']}" for alert in open_alerts if alert["held_back"]]
        state["pending"] = len(open_alerts)
        return Response(PinningStatusSerializer(state).data)


# --- pinning alerts --------------------------------------------------------------------------------


class PinningAlertSerializer(serializers.ModelSerializer):
    """A tool whose definition no longer matches its approval (or is new since), as found."""

    virtual_server = serializers.SlugRelatedField(slug_field="name", read_only=True, help_text="The virtual server's name.")
    member = serializers.SlugRelatedField(slug_field="prefix", read_only=True, help_text="The member's prefix.")

    class Meta:
        model = PinningAlert
        fields = [
            "id",
            "virtual_server",
            "member",
            "tool_name",
            "kind",
            "digest",
            "definition",
            "held_back",
            "detected_at",
            "resolved_at",
        ]
        read_only_fields = fields


class PinningAlertFilter(django_filters.FilterSet):
    virtual_server = django_filters.CharFilter(field_name="virtual_server__name", help_text="The virtual server's name.")
    resolved = django_filters.BooleanFilter(
        field_name="resolved_at", lookup_expr="isnull", exclude=True, help_text="Whether an approval resolved it."
    )

    class Meta:
        model = PinningAlert
        fields = ["virtual_server", "kind", "held_back", "resolved"]


@extend_schema(tags=["federation"])
class PinningAlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Pinning alerts, newest first: written when a member serves a tool differently from its
    approval; resolved by approving (``/virtual-servers/{id}/approve/``)."""

    queryset = PinningAlert.objects.select_related("virtual_server", "member").order_by("-detected_at", "-id")
    serializer_class = PinningAlertSerializer
    filterset_class = PinningAlertFilter
