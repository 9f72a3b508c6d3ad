"""Routes, services and targets: what the gateway sends where.

The hot path never reads these tables; it reads an in-process snapshot (``snapshot.py``)
rebuilt whenever a save or delete here bumps the config version.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from urllib.parse import urlsplit

from django.db import models

from authn.models import grant_list_problem
from routing.matchers import compile_path_pattern, compile_value_matchers


def is_origin(value: str) -> bool:
    """``scheme://host[:port]`` and nothing more (what browsers send in ``Origin``)."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/") and not parts.query

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_RESPONSE_TIMEOUT = 60.0

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CONTENT_FIELDS = frozenset({"method", "name", "uri"})


class ServiceKind(models.TextChoices):
    MCP = "mcp", "MCP server (Streamable HTTP)"
    HTTP = "http", "Plain HTTP API"
    # No targets: the gateway itself serves it, aggregating MCP services (federation app).
    VIRTUAL = "virtual", "Virtual MCP server (federation)"


class LoadBalancingPolicy(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin", "Weighted round robin"
    LEAST_CONNECTIONS = "least_connections", "Least connections"
    RESPONSE_TIME = "response_time", "Response time"
    HEALTH_BASED = "health_based", "Health based"


class PathMatch(models.TextChoices):
    PREFIX = "prefix", "Prefix (the path and everything below it)"
    EXACT = "exact", "Exact"
    PATTERN = "pattern", "Pattern with named parameters, e.g. /users/{id}/orders"


class InjectionMode(models.TextChoices):
    BLOCK = "block", "Block (400)"
    LOG = "log", "Log only"
    OFF = "off", "Off"


class SanitizationMode(models.TextChoices):
    AUTO = "auto", "Auto: escape on HTTP routes, off on MCP routes"
    ESCAPE = "escape", "HTML-escape string inputs"
    OFF = "off", "Off (forward byte-exact)"


class FanoutStrategy(models.TextChoices):
    NONE = "", "None: the route's own service answers"
    FIRST = "first", "First: every service is asked, the first successful answer wins (hedging)"
    LAST = "last", "Last: every service is asked, the last successful answer wins"
    MERGE = "merge", "Merge: list methods answer the union of every service's list (MCP)"


# Separates a service's name from its tool or prompt name in a merged list ("search__lookup").
MERGED_NAME_SEPARATOR = "__"


class Service(models.Model):
    """A named group of interchangeable targets, with how to balance, time out and retry."""

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=ServiceKind.choices, default=ServiceKind.MCP)
    lb_policy = models.CharField(
        "load-balancing policy",
        max_length=32,
        choices=LoadBalancingPolicy.choices,
        default=LoadBalancingPolicy.ROUND_ROBIN,
    )
    connect_timeout = models.FloatField(
        "connect timeout (s)", default=DEFAULT_CONNECT_TIMEOUT, validators=[MinValueValidator(0.1)]
    )
    request_timeout = models.FloatField(
        "request timeout (s)",
        default=DEFAULT_REQUEST_TIMEOUT,
        validators=[MinValueValidator(0.1)],
        help_text="Longest wait for the upstream's response headers.",
    )
    response_timeout = models.FloatField(
        "response timeout (s)",
        default=DEFAULT_RESPONSE_TIMEOUT,
        validators=[MinValueValidator(0.1)],
        help_text="Longest silence while reading the response body (or between stream events).",
    )
    max_retries = models.PositiveSmallIntegerField(default=2, validators=[MaxValueValidator(10)])
    retry_backoff_ms = models.PositiveIntegerField("retry backoff base (ms)", default=100)
    retry_backoff_max_ms = models.PositiveIntegerField("retry backoff cap (ms)", default=2000)
    retry_budget_percent = models.PositiveSmallIntegerField(
        "retry budget (%)",
        default=20,
        validators=[MaxValueValidator(100)],
        help_text="Retries allowed as a share of recent requests, so retries cannot multiply an outage.",
    )
    circuit_failure_threshold = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1)], help_text="Failures within the window that open the circuit."
    )
    circuit_window_seconds = models.FloatField("circuit window (s)", default=30.0, validators=[MinValueValidator(1)])
    circuit_recovery_seconds = models.FloatField(
        "circuit recovery (s)", default=30.0, validators=[MinValueValidator(0.1)],
        help_text="How long an open circuit refuses calls before letting probes through.",
    )
    circuit_half_open_probes = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Calls let through at once while half-open."
    )
    health_check_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="HTTP path probed by active health checks; empty means an MCP probe (server/discover, else ping).",
    )
    health_check_interval = models.FloatField(
        "health check interval (s)", default=10.0, validators=[MinValueValidator(0.5)]
    )
    health_check_timeout = models.FloatField(
        "health check timeout (s)", default=5.0, validators=[MinValueValidator(0.1)]
    )
    healthy_threshold = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Consecutive good checks that mark a target healthy."
    )
    unhealthy_threshold = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Consecutive failed checks that mark a target unhealthy."
    )
    passive_failure_threshold = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1)],
        help_text="Connect failures or 5xx on live traffic, within 10 s, that eject a target.",
    )
    passive_ejection_seconds = models.FloatField(
        "ejection cool-down (s)", default=30.0, validators=[MinValueValidator(0.1)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def validate_upstream_url(value: str) -> None:
    URLValidator(schemes=["http", "https"])(value)


class Target(models.Model):
    """One upstream endpoint of a service."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="targets")
    url = models.CharField(
        "endpoint URL",
        max_length=500,
        validators=[validate_upstream_url],
        help_text="Base URL, e.g. http://10.0.0.5:9100/mcp; the route's remaining path is appended.",
    )
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)
    healthy = models.BooleanField(default=True)
    last_health_check = models.DateTimeField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    active_connections = models.PositiveIntegerField(default=0)
    upstream_auth_header = models.CharField(
        max_length=100, blank=True, help_text="Header carrying the gateway's own credential for this upstream."
    )
    upstream_auth_value = models.CharField(max_length=2000, blank=True)

    class Meta:
        ordering = ["service__name", "id"]
        constraints = [models.UniqueConstraint(fields=["service", "url"], name="unique_target_url_per_service")]

    def __str__(self) -> str:
        return f"{self.service.name} -> {self.url}"

    def clean(self) -> None:
        if self.upstream_auth_value and not self.upstream_auth_header:
            raise ValidationError({"upstream_auth_header": "Name the header that carries the credential."})


class Route(models.Model):
    """Which requests go to which service; the highest priority matching route wins."""

    name = models.SlugField(max_length=100, unique=True)
    path = models.CharField(max_length=300, help_text="Starts with /, e.g. /mcp/demo")
    path_match = models.CharField(max_length=8, choices=PathMatch.choices, default=PathMatch.PREFIX)
    methods = models.JSONField(
        default=list, blank=True, help_text='HTTP methods, e.g. ["GET", "POST"]; empty means any.'
    )
    header_matchers = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per header: a value to equal, or {"present": true|false}, {"equals": "a"}, {"regex": "^a.*"}. '
        'E.g. {"X-Tenant": "a", "X-Debug": {"present": false}}.',
    )
    query_matchers = models.JSONField(
        default=dict, blank=True, help_text='Per query parameter, same forms as headers, e.g. {"v": {"regex": "[23]"}}.'
    )
    content_matchers = models.JSONField(
        default=dict,
        blank=True,
        help_text='JSON-RPC content: "method", "name" (tool or prompt) and "uri" (resource), same forms, '
        'e.g. {"method": "tools/call", "name": "add"}.',
    )
    priority = models.IntegerField(default=0, help_text="Higher wins.")
    enabled = models.BooleanField(default=True)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="routes")
    path_rewrite = models.CharField(
        max_length=300,
        blank=True,
        help_text="Replaces the matched path before the target's base URL is prefixed; empty keeps it relative.",
    )
    connect_timeout = models.FloatField(
        "connect timeout override (s)", null=True, blank=True, validators=[MinValueValidator(0.1)]
    )
    request_timeout = models.FloatField(
        "request timeout override (s)", null=True, blank=True, validators=[MinValueValidator(0.1)]
    )
    response_timeout = models.FloatField(
        "response timeout override (s)", null=True, blank=True, validators=[MinValueValidator(0.1)]
    )
    injection_detection = models.CharField(
        max_length=8,
        choices=InjectionMode.choices,
        default=InjectionMode.BLOCK,
        help_text="SQL-injection and XSS detection on request inputs.",
    )
    sanitization = models.CharField(
        max_length=8,
        choices=SanitizationMode.choices,
        default=SanitizationMode.AUTO,
        help_text="MCP tool arguments (code, SQL) must usually reach the tool byte-exact, hence off there by default.",
    )
    cors_allowed_origins = models.JSONField(
        "extra CORS origins",
        default=list,
        blank=True,
        help_text='Browser origins allowed on this route on top of the gateway-wide list, e.g. ["https://app.example"].',
    )
    allow_anonymous = models.BooleanField(
        "open to anonymous callers",
        default=False,
        help_text="Off (the default): every request needs a valid JWT or API key. On: callers without a credential "
        "are let in too (a credential that is presented is still verified).",
    )
    required_permissions = models.JSONField(
        default=list,
        blank=True,
        help_text='Grants a caller must hold to use this route at all, e.g. ["route:billing"].',
    )
    tool_permissions = models.BooleanField(
        "check tool permissions",
        default=True,
        help_text="MCP routes: tools/call needs tool:<service>:<tool> (prompts/get prompt:…, resources/read "
        "resource:…), and lists show only what the caller may use. Off: any caller of the route may use everything.",
    )
    idempotent_tools = models.JSONField(
        default=list,
        blank=True,
        help_text='MCP tools safe to call twice, so a failed call may be retried, e.g. ["search"].',
    )
    upstream_batching = models.BooleanField(
        "batch calls toward the upstream",
        default=False,
        help_text="JSON-RPC calls bound for the same target within a short window (by default 0.1 s, at most 10 calls) are "
        "sent as one JSON-RPC batch, and each caller gets its own answer. Only for upstreams that accept batches "
        "and answer them with a JSON array.",
    )
    fanout = models.CharField(
        "fan-out",
        max_length=8,
        choices=FanoutStrategy.choices,
        default=FanoutStrategy.NONE,
        blank=True,
        help_text="Ask the route's service and the fan-out services at once. First and last send every request to "
        "every service: use them for calls that are harmless to repeat. Merge asks every service only for lists "
        "(and resources/read), and sends a tool or prompt call to the one service its prefixed name names.",
    )
    fanout_services = models.JSONField(
        "fan-out services",
        default=list,
        blank=True,
        help_text='Services asked together with the route\'s own, in this order, e.g. ["search-eu", "search-us"]. '
        f"Merged tool and prompt names become <service>{MERGED_NAME_SEPARATOR}<name>.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if isinstance(self.methods, list):
            self.methods = [str(m).upper() for m in self.methods]
        if not self.path.startswith("/"):
            errors["path"] = "The path must start with /."
        elif self.path_match == PathMatch.PATTERN:
            try:
                compile_path_pattern(self.path)
            except ValueError as exc:
                errors["path"] = f"Bad pattern: {exc}."
        if self.path_rewrite and not self.path_rewrite.startswith("/"):
            errors["path_rewrite"] = "A rewrite must start with /."
        if not isinstance(self.methods, list) or any(m not in HTTP_METHODS for m in self.methods):
            errors["methods"] = f"Give a list drawn from {', '.join(HTTP_METHODS)}."
        for field_name in ("header_matchers", "query_matchers", "content_matchers"):
            try:
                compile_value_matchers(getattr(self, field_name))
            except ValueError as exc:
                errors[field_name] = f"Bad matcher: {exc}."
        content = self.content_matchers
        if isinstance(content, dict) and not set(content) <= CONTENT_FIELDS:
            errors.setdefault("content_matchers", f"Content matchers take {', '.join(sorted(CONTENT_FIELDS))}.")
        origins = self.cors_allowed_origins
        if not isinstance(origins, list) or not all(isinstance(o, str) and is_origin(o) for o in origins):
            errors["cors_allowed_origins"] = 'Give a list of origins like "https://app.example" (scheme and host, no path).'
        permissions_problem = grant_list_problem(self.required_permissions)
        if permissions_problem is not None:
            errors["required_permissions"] = permissions_problem
        if not isinstance(self.idempotent_tools, list) or not all(isinstance(t, str) for t in self.idempotent_tools):
            errors["idempotent_tools"] = 'Give a list of tool names, e.g. ["search"].'
        errors.update(self._fanout_problems())
        if errors:
            raise ValidationError(errors)


    def _fanout_problems(self) -> dict[str, str]:
        """What makes the fan-out settings unusable, by field, in words an operator can act on."""
        names = self.fanout_services
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            return {"fanout_services": 'Give a list of service names, e.g. ["search-eu", "search-us"].'}
        if not self.fanout:
            return {"fanout_services": "Choose a fan-out strategy, or leave this list empty."} if names else {}
        if not names:
            return {"fanout_services": "Name at least one service to ask together with the route's own."}
        if len(set(names)) != len(names):
            return {"fanout_services": "Name each service once."}
        own = self.service if self.service_id else None
        if own is not None and own.name in names:
            return {"fanout_services": f"{own.name} is the route's own service; it is always asked."}
        found = {service.name: service for service in Service.objects.filter(name__in=names)}
        missing = [name for name in names if name not in found]
        if missing:
            return {"fanout_services": f"No service is named {', '.join(missing)}."}
        kinds = {service.kind for service in found.values()} | ({own.kind} if own is not None else set())
        if len(kinds) > 1:
            return {"fanout_services": "The route's service and its fan-out services must all be of one kind."}
        if self.fanout == FanoutStrategy.MERGE and kinds != {ServiceKind.MCP}:
            return {"fanout": "Merging lists is for MCP services (tools/list, prompts/list, resources/list)."}
        return {}


class ConfigRevision(models.Model):
    """A single row counting configuration changes, committed with the change itself.

    Processes poll it (or its copy in the state store) to know when to rebuild their snapshot;
    being in the same transaction as the change, it can never announce data not yet visible.
    """

    revision = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config revision {self.revision}"
