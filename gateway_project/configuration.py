"""The gateway's routing setup as one document, so a gateway can be set up from git.

``export_document()`` writes services (with their targets), routes (with their cache policy),
rate-limit policies and alert rules; ``import_document()`` makes the database say what a
document says.
The format is in ``docs/api.md``; in short::

    version: 1
    services:
      - name: demo
        kind: mcp
        ...                                 every setting of the service
        targets:
          - url: http://127.0.0.1:9100/mcp
            ...
            upstream_auth_value_set: false  whether a credential is set, never the credential
    routes:
      - name: demo
        service: demo                       references are names
        ...
        cache_policy: null                  or {enabled, ttl_seconds, cacheable_tools}
    rate_limit_policies:
      - name: per-ip
        ...
        routes: [demo]
    alert_rules:
      - name: slow-demo
        metric: p95_latency_ms
        ...
        webhook_url: https://hooks.example/alerts

Objects are known by their natural keys (service, route, policy and alert rule names; a target
by its service and URL), never by database ids, and the document holds no secret of the
gateway's own: API keys, users, roles and sessions are not part of it, and a target's upstream
credential is exported as its presence only. An import keeps a target's credential unless the
document carries one. An alert rule's webhook URL is configuration and is exported as it is,
even when whoever runs the receiver put a token in it (docs/api.md says so).

Every field a person sets is exported (``config_document.py`` says which), and a field added
to a model is exported without a change here.

Import is a declarative sync: each object in the document is created or updated to exactly what
the document says (a field left out takes its default); with ``prune``, objects the document
does not mention are deleted. It runs in two steps: the document's shape is checked first,
with no query; then, in one transaction, every object is validated (``full_clean``, the admin's
own checks) right before it is written, and any error rolls everything back. Validation needs
the transaction because an object's validity depends on others the same document creates (a
route's fan-out services). A bad document therefore changes nothing; ``dry_run`` rolls back a
good one too. Importing what is already there writes nothing, so it does not bump the config
version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction
from django.db.models import ProtectedError

from gateway_project.config_document import (
    ALERT_RULE_FIELDS,
    CACHE_POLICY_FIELDS,
    DOCUMENT_VERSION,
    POLICY_FIELDS,
    ROUTE_FIELDS,
    SECRET_FIELD,
    SECRET_PRESENCE_FIELD,
    SERVICE_FIELDS,
    TARGET_FIELDS,
    shape_problems,
)
from monitoring.models import AlertRule
from performance.models import ResponseCachePolicy
from routing.models import Route, Service, Target
from security.models import RateLimitPolicy

MISSING_SECRET = "the document says an upstream credential is set, but carries none and this target has none: set it in the admin or the API"


class ConfigImportError(Exception):
    """Raised when a document cannot be imported; nothing was changed. ``errors`` maps a place
    in the document (``routes[2].path``) to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{place}: {' '.join(messages)}" for place, messages in errors.items()))


# --- export --------------------------------------------------------------------------------------


def exported_fields(obj: models.Model, fields: list[models.Field]) -> dict[str, Any]:
    return {f.name: f.value_from_object(obj) for f in fields}


def export_document() -> dict[str, Any]:
    """Every service, route, rate-limit policy and alert rule, sorted by name (targets by URL)."""
    services = Service.objects.prefetch_related("targets").order_by("name")
    routes = Route.objects.select_related("service", "cache_policy").order_by("name")
    policies = RateLimitPolicy.objects.prefetch_related("routes").order_by("name")
    return {
        "version": DOCUMENT_VERSION,
        "services": [exported_service(service) for service in services],
        "routes": [exported_route(route) for route in routes],
        "rate_limit_policies": [exported_policy(policy) for policy in policies],
        "alert_rules": [exported_fields(rule, ALERT_RULE_FIELDS) for rule in AlertRule.objects.order_by("name")],
    }


def exported_service(service: Service) -> dict[str, Any]:
    targets = sorted(service.targets.all(), key=lambda target: target.url)
    return {**exported_fields(service, SERVICE_FIELDS), "targets": [exported_target(target) for target in targets]}


def exported_target(target: Target) -> dict[str, Any]:
    return {**exported_fields(target, TARGET_FIELDS), SECRET_PRESENCE_FIELD: bool(target.upstream_auth_value)}


def exported_route(route: Route) -> dict[str, Any]:
    policy = getattr(route, "cache_policy", None)
    cache_policy = exported_fields(policy, CACHE_POLICY_FIELDS) if policy is not None else None
    # The name, then the service it sends to, then the rest.
    return {"name": route.name, "service": route.service.name, **exported_fields(route, ROUTE_FIELDS), "cache_policy": cache_policy}


def exported_policy(policy: RateLimitPolicy) -> dict[str, Any]:
    return {**exported_fields(policy, POLICY_FIELDS), "routes": sorted(route.name for route in policy.routes.all())}


# --- import: objects, validated and written in one transaction -----------------------------------


KINDS = ("services", "targets", "routes", "cache_policies", "rate_limit_policies", "alert_rules")


@dataclass
class ImportSummary:
    """What an import did (or, on a dry run, would have done), counted per kind of object."""

    dry_run: bool = False
    prune: bool = False
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        counts = {name: {kind: getattr(self, name)[kind] for kind in KINDS} for name in ("created", "updated", "unchanged", "deleted")}
        return {"dry_run": self.dry_run, "prune": self.prune, **counts, "warnings": self.warnings}


def import_document(document: Any, *, prune: bool = False, dry_run: bool = False) -> ImportSummary:
    """Make the configuration say what ``document`` says; raise ConfigImportError (having
    changed nothing) when any part of it is not valid."""
    problems = shape_problems(document, prune=prune)
    if problems:
        raise ConfigImportError(problems)
    sync = Sync(ImportSummary(dry_run=dry_run, prune=prune))
    with transaction.atomic():
        sync.apply(document, prune=prune)
        if sync.errors:
            raise ConfigImportError(sync.errors)
        if dry_run:
            transaction.set_rollback(True)
    return sync.summary


class Sync:
    """One import's work: each object of the document in dependency order, then the pruning."""

    def __init__(self, summary: ImportSummary) -> None:
        self.summary = summary
        self.errors: dict[str, list[str]] = {}
        self.services: dict[str, Service] = {}
        self.routes: dict[str, Route] = {}

    def apply(self, document: dict[str, Any], *, prune: bool) -> None:
        for index, entry in enumerate(document.get("services", [])):
            self.sync_service(entry, f"services[{index}]", prune)
        for index, entry in enumerate(document.get("routes", [])):
            self.sync_route(entry, f"routes[{index}]", prune)
        for index, entry in enumerate(document.get("rate_limit_policies", [])):
            self.sync_policy(entry, f"rate_limit_policies[{index}]")
        for index, entry in enumerate(document.get("alert_rules", [])):
            self.sync_alert_rule(entry, f"alert_rules[{index}]")
        if prune and not self.errors:
            self.prune(document)

    def sync_service(self, entry: dict[str, Any], place: str, prune: bool) -> None:
        existing = Service.objects.filter(name=entry["name"]).first()
        service = self.sync_object("services", place, existing or Service(), SERVICE_FIELDS, entry)
        if service is None:
            return
        self.services[service.name] = service
        urls = set()
        for index, target_entry in enumerate(entry.get("targets", [])):
            urls.add(target_entry["url"])
            self.sync_target(service, target_entry, f"{place}.targets[{index}]")
        if prune:
            self.delete("targets", service.targets.exclude(url__in=urls))

    def sync_target(self, service: Service, entry: dict[str, Any], place: str) -> None:
        target = Target.objects.filter(service=service, url=entry["url"]).first() or Target(service=service)
        # The credential is never exported; a document may still carry one, else it is kept.
        new_secret = entry.get(SECRET_FIELD, target.upstream_auth_value)
        secret_changed = new_secret != target.upstream_auth_value  # a string: the shape check saw to it
        target.upstream_auth_value = str(new_secret)
        saved = self.sync_object("targets", place, target, TARGET_FIELDS, entry, force=secret_changed)
        if saved is not None and entry.get(SECRET_PRESENCE_FIELD) is True and not saved.upstream_auth_value:
            self.summary.warnings.append(f"{place}: {MISSING_SECRET}")

    def sync_route(self, entry: dict[str, Any], place: str, prune: bool) -> None:
        service = self.find_service(entry.get("service"), place)
        if service is None:
            return
        route = Route.objects.filter(name=entry["name"]).first() or Route()
        moved = route.service_id != service.pk
        route.service = service
        saved = self.sync_object("routes", place, route, ROUTE_FIELDS, entry, force=moved)
        if saved is None:
            return
        self.routes[saved.name] = saved
        self.sync_cache_policy(saved, entry.get("cache_policy"), f"{place}.cache_policy", prune)

    def sync_cache_policy(self, route: Route, entry: dict[str, Any] | None, place: str, prune: bool) -> None:
        existing = ResponseCachePolicy.objects.filter(route=route).first()
        if entry is None:
            if prune and existing is not None:
                self.delete("cache_policies", ResponseCachePolicy.objects.filter(pk=existing.pk))
            return
        self.sync_object("cache_policies", place, existing or ResponseCachePolicy(route=route), CACHE_POLICY_FIELDS, entry)

    def sync_policy(self, entry: dict[str, Any], place: str) -> None:
        routes = self.find_routes(entry.get("routes", []), f"{place}.routes")
        if routes is None:
            return
        existing = RateLimitPolicy.objects.filter(name=entry["name"]).first()
        same_routes = existing is not None and set(existing.routes.values_list("pk", flat=True)) == {r.pk for r in routes}
        policy = self.sync_object("rate_limit_policies", place, existing or RateLimitPolicy(), POLICY_FIELDS, entry, force=not same_routes)
        if policy is not None and not same_routes:
            policy.routes.set(routes)

    def sync_alert_rule(self, entry: dict[str, Any], place: str) -> None:
        # A rule's key names a route, target, API key or tool as text, not as a reference: a rule
        # may watch what does not exist yet, as in the admin.
        existing = AlertRule.objects.filter(name=entry["name"]).first()
        self.sync_object("alert_rules", place, existing or AlertRule(), ALERT_RULE_FIELDS, entry)

    def sync_object(
        self, kind: str, place: str, obj: models.Model, fields: list[models.Field], entry: dict[str, Any], *, force: bool = False
    ) -> Any:
        """Set every field from ``entry`` (a field left out takes its default), validate, and save
        if anything changed. None when the object is not valid (its errors are recorded)."""
        is_new = obj._state.adding
        before = {f.attname: getattr(obj, f.attname) for f in fields}
        for f in fields:
            setattr(obj, f.name, entry[f.name] if f.name in entry else f.get_default())
        try:
            obj.full_clean()
        except ValidationError as exc:
            self.record(place, exc)
            return None
        changed = is_new or force or fields_changed(obj, fields, before)
        if not changed:
            self.summary.unchanged[kind] += 1
            return obj
        obj.save()
        (self.summary.created if is_new else self.summary.updated)[kind] += 1
        return obj

    def find_service(self, name: Any, place: str) -> Service | None:
        service = self.services.get(name) if isinstance(name, str) else None
        if service is None and isinstance(name, str) and name:
            service = Service.objects.filter(name=name).first()
        if service is None:
            self.errors.setdefault(f"{place}.service", []).append(f"No service is named {name!r}.")
        return service

    def find_routes(self, names: Any, place: str) -> list[Route] | None:
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            self.errors.setdefault(place, []).append("Give a list of route names.")
            return None
        found = {name: self.routes.get(name) or Route.objects.filter(name=name).first() for name in names}
        missing = sorted(name for name, route in found.items() if route is None)
        if missing:
            self.errors.setdefault(place, []).append(f"No route is named {', '.join(missing)}.")
            return None
        return [route for route in found.values() if route is not None]

    def prune(self, document: dict[str, Any]) -> None:
        """Delete what the document does not mention, dependents first (a rule's events go with it)."""
        self.delete("alert_rules", AlertRule.objects.exclude(name__in=[e["name"] for e in document["alert_rules"]]))
        self.delete("rate_limit_policies", RateLimitPolicy.objects.exclude(name__in=[e["name"] for e in document["rate_limit_policies"]]))
        self.delete("routes", Route.objects.exclude(name__in=[e["name"] for e in document["routes"]]))
        self.delete("services", Service.objects.exclude(name__in=[e["name"] for e in document["services"]]))

    def delete(self, kind: str, queryset: models.QuerySet[Any]) -> None:
        for obj in queryset:
            try:
                obj.delete()
            except ProtectedError as exc:
                self.errors.setdefault(kind, []).append(f"{obj} is still in use by {', '.join(map(str, exc.protected_objects))}.")
                continue
            self.summary.deleted[kind] += 1

    def record(self, place: str, exc: ValidationError) -> None:
        for name, messages in exc.message_dict.items():
            key = place if name == NON_FIELD_ERRORS else f"{place}.{name}"
            self.errors.setdefault(key, []).extend(messages)


def fields_changed(obj: models.Model, fields: list[models.Field], before: dict[str, Any]) -> bool:
    return any(getattr(obj, f.attname) != before[f.attname] for f in fields)
