"""Virtual MCP servers: one gateway endpoint serving the tools, prompts and resources of several
MCP services as if they were one server.

A ``VirtualServer`` owns a ``Service`` of kind ``virtual`` (it has no targets: the gateway itself
answers) and a ``Route`` at its path. Its ``save()`` creates and updates both in the same
transaction, so every stage of the request path (authentication, rate limits, validation,
authorization, the response cache, metrics) applies to its traffic exactly as to any route;
only the terminal stage hands the exchange to ``federation.serving``. Access settings
(credentials, required permissions, CORS) stay on the route, edited where routes are edited.

Each ``Member`` is an MCP service with a prefix: its items are exposed as ``<prefix>_<name>``
(prefixes hold no ``_``, so the first ``_`` of a name always ends the prefix, as agentgateway
does). ``ExposureRule`` rows select, rename and re-describe single items and pin tool
arguments. ``ApprovedTool`` rows are the operator's approval of a tool definition (pinning.py),
and ``PinningAlert`` rows record each definition that changed after approval.

The hot path never reads these tables: ``federation.snapshot`` compiles them, with the
routing snapshot, into an in-process cache rebuilt when the config version moves.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction

from routing.models import PathMatch, Route, SanitizationMode, Service, ServiceKind

VIRTUAL_PATH_PREFIX = "/mcp/v/"
# A prefix never holds "_": "<prefix>_<name>" then splits at its first "_" without ambiguity.
PREFIX_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
# What MCP allows in a tool or prompt name (2025-11-25, "Tool names").
EXPOSED_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
PREFIX_SEPARATOR = "_"


def default_path(name: str) -> str:
    return f"{VIRTUAL_PATH_PREFIX}{name}"


def exposed_item_name(prefix: str, name: str) -> str:
    """``search`` + ``lookup`` -> ``search_lookup``."""
    return f"{prefix}{PREFIX_SEPARATOR}{name}"


class PinningPolicy(models.TextChoices):
    BLOCK = "block", "Block: a changed or new tool is held back until approved"
    WARN = "warn", "Warn: changed and new tools are served, and an alert fires"
    OFF = "off", "Off: definitions are not pinned"


class UnlistedItems(models.TextChoices):
    EXPOSE = "expose", "Expose every item without a rule (rules exclude)"
    HIDE = "hide", "Hide every item without a rule (rules include: an allow-list)"


class SessionScope(models.TextChoices):
    SHARED = "shared", "Shared: one upstream session per target, reused for every client"
    CLIENT = "client", "Per client session: the member keeps state for each client"


class ItemKind(models.TextChoices):
    TOOL = "tool", "Tool"
    PROMPT = "prompt", "Prompt"
    RESOURCE = "resource", "Resource"


class RuleAction(models.TextChoices):
    INCLUDE = "include", "Include"
    EXCLUDE = "exclude", "Exclude"


class AlertKind(models.TextChoices):
    CHANGED = "changed", "Definition changed after approval"
    NEW = "new", "New tool since approval"


class VirtualServer(models.Model):
    """One MCP endpoint aggregating its members; served through its own route."""

    name = models.SlugField(
        max_length=100, unique=True, help_text="Also the name of its service and route (tool:<name>:<tool> grants)."
    )
    path = models.CharField(max_length=300, blank=True, help_text=f"Empty: {VIRTUAL_PATH_PREFIX}<name>.")
    enabled = models.BooleanField(default=True)
    instructions = models.TextField(blank=True, help_text="Sent to clients in initialize and server/discover.")
    pinning_policy = models.CharField(max_length=8, choices=PinningPolicy.choices, default=PinningPolicy.BLOCK)
    service = models.OneToOneField(
        Service, on_delete=models.CASCADE, null=True, editable=False, related_name="virtual_server"
    )
    route = models.OneToOneField(Route, on_delete=models.SET_NULL, null=True, editable=False, related_name="virtual_server")
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    approved_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def served_path(self) -> str:
        return self.path or default_path(self.name)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        other_routes = Route.objects.exclude(pk=self.route_id) if self.route_id else Route.objects.all()
        other_services = Service.objects.exclude(pk=self.service_id) if self.service_id else Service.objects.all()
        if not self.served_path.startswith("/"):
            errors["path"] = "The path must start with /."
        elif other_routes.filter(path=self.served_path).exists():
            errors["path"] = f"The path {self.served_path} is already routed."
        if other_services.filter(name=self.name).exists():
            errors["name"] = f"A service is already named {self.name}."
        elif other_routes.filter(name=self.name).exists():
            errors["name"] = f"A route is already named {self.name}."
        if errors:
            raise ValidationError(errors)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save with its service and route, all or nothing."""
        with transaction.atomic():
            self.path = self.served_path
            self.service = self._saved_service()
            self.route = self._saved_route(self.service)
            super().save(*args, **kwargs)

    def _saved_service(self) -> Service:
        service = self.service or Service(kind=ServiceKind.VIRTUAL)
        service.name = self.name
        service.kind = ServiceKind.VIRTUAL
        service.save()
        return service

    def _saved_route(self, service: Service) -> Route:
        """The route at the virtual server's path. New routes need a credential and check tool
        permissions; after that, access settings are the route's own (routing admin)."""
        route = self.route or Route(allow_anonymous=False, tool_permissions=True)
        route.name = self.name
        route.path = self.path
        route.path_match = PathMatch.EXACT
        route.enabled = self.enabled
        route.service = service
        # Tool arguments (code, SQL) must reach the members byte-exact, as on any MCP route.
        route.sanitization = SanitizationMode.OFF
        route.save()
        return route


class Member(models.Model):
    """An MCP service serving its items through a virtual server, under a prefix."""

    virtual_server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="members")
    service = models.ForeignKey(
        Service,
        on_delete=models.PROTECT,
        limit_choices_to={"kind": ServiceKind.MCP},
        related_name="virtual_memberships",
    )
    prefix = models.CharField(
        max_length=40,
        validators=[RegexValidator(PREFIX_PATTERN, "Lower-case letters, digits and -, without _ (at most 40).")],
        help_text="Its items are exposed as <prefix>_<name>.",
    )
    unlisted_items = models.CharField(max_length=8, choices=UnlistedItems.choices, default=UnlistedItems.EXPOSE)
    session_scope = models.CharField(max_length=8, choices=SessionScope.choices, default=SessionScope.SHARED)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in the merged lists (lowest first).")

    class Meta:
        ordering = ["virtual_server", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["virtual_server", "prefix"], name="unique_member_prefix"),
            models.UniqueConstraint(fields=["virtual_server", "service"], name="unique_member_service"),
        ]

    def __str__(self) -> str:
        return self.prefix

    def clean(self) -> None:
        if self.service_id and self.service.kind != ServiceKind.MCP:
            raise ValidationError({"service": "A member must be an MCP service."})


class ExposureRule(models.Model):
    """How one item of a member is exposed: included or not, renamed, re-described, and (tools)
    with arguments pinned to fixed values that the client neither sees nor may set."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=8, choices=ItemKind.choices, default=ItemKind.TOOL)
    name = models.CharField(max_length=500, help_text="The member's own name for it (a resource: its URI).")
    action = models.CharField(max_length=8, choices=RuleAction.choices, default=RuleAction.INCLUDE)
    exposed_name = models.CharField(
        "rename to",
        max_length=128,
        blank=True,
        validators=[RegexValidator(EXPOSED_NAME_PATTERN, "Letters, digits, _, . and - (at most 128).")],
        help_text="Instead of <prefix>_<name> (tools and prompts).",
    )
    description = models.TextField("description override", blank=True)
    pinned_arguments = models.JSONField(
        default=dict,
        blank=True,
        help_text='Tools: arguments fixed by the gateway, e.g. {"region": "eu"}; removed from the schema '
        "clients see, set on every call, and refused when a client sends them.",
    )

    class Meta:
        ordering = ["member", "kind", "name"]
        constraints = [models.UniqueConstraint(fields=["member", "kind", "name"], name="unique_rule_per_item")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.pinned_arguments, dict):
            errors["pinned_arguments"] = 'Give an object of argument names and values, e.g. {"region": "eu"}.'
        elif self.pinned_arguments and self.kind != ItemKind.TOOL:
            errors["pinned_arguments"] = "Only tools take arguments."
        if self.exposed_name and self.kind == ItemKind.RESOURCE:
            errors["exposed_name"] = "A resource keeps its URI; it cannot be renamed."
        if self.exposed_name and self.member_id and self._rename_taken():
            errors["exposed_name"] = f"Another item of this virtual server is already renamed {self.exposed_name}."
        if errors:
            raise ValidationError(errors)

    def _rename_taken(self) -> bool:
        return (
            ExposureRule.objects.filter(
                member__virtual_server_id=self.member.virtual_server_id, kind=self.kind, exposed_name=self.exposed_name
            )
            .exclude(pk=self.pk)
            .exists()
        )


class ApprovedTool(models.Model):
    """An operator's approval of one tool definition, as the member served it (pinning.py)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="approved_tools")
    tool_name = models.CharField(max_length=500)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the name, description and input schema.")
    definition = models.JSONField(help_text="The approved name, description and input schema.")
    approved_at = models.DateTimeField(auto_now=True)
    approved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["member", "tool_name"]
        constraints = [models.UniqueConstraint(fields=["member", "tool_name"], name="unique_approval_per_tool")]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.digest[:12]})"


class PinningAlert(models.Model):
    """A tool whose definition no longer matches its approval (or that is new since), as found."""

    virtual_server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="pinning_alerts")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="pinning_alerts")
    tool_name = models.CharField(max_length=500)
    kind = models.CharField(max_length=8, choices=AlertKind.choices)
    digest = models.CharField(max_length=64, help_text="Of the definition found.")
    definition = models.JSONField(help_text="The definition found.")
    held_back = models.BooleanField(help_text="Whether the tool was withheld from clients (policy block).")
    detected_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(fields=["member", "tool_name", "digest"], name="one_alert_per_definition")
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {self.get_kind_display()}"
