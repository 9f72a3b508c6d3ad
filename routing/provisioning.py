"""Putting a server behind the gateway in one step: service, targets and route together.

Used by ``manage.py add_route`` and ``manage.py seed_demo``; idempotent by route name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from routing.models import LoadBalancingPolicy, PathMatch, Route, Service, ServiceKind, Target, validate_upstream_url


class ProvisioningError(Exception):
    """Raised when the requested route cannot be created as asked (bad URL, taken path)."""


@dataclass
class ProvisionResult:
    route: Route
    service: Service
    created: bool
    targets_added: list[str] = field(default_factory=list)


def default_route_name(path: str) -> str:
    return slugify(path.strip("/").replace("/", "-")) or "root"


def _validated_urls(upstream_urls: list[str]) -> list[str]:
    if not upstream_urls:
        raise ProvisioningError("Give at least one upstream URL.")
    for url in upstream_urls:
        try:
            validate_upstream_url(url)
        except ValidationError:
            raise ProvisioningError(f"Not an http(s) URL: {url!r}") from None
    return upstream_urls


def provision_route(
    path: str,
    upstream_urls: list[str],
    *,
    name: str = "",
    kind: str = ServiceKind.MCP,
    lb_policy: str = LoadBalancingPolicy.ROUND_ROBIN,
    open_to_anonymous: bool = False,
) -> ProvisionResult:
    """Create (or complete) the route ``name`` at ``path`` with a service over ``upstream_urls``.

    The route requires a credential unless ``open_to_anonymous``; an open route also lets every
    caller use every tool (anonymous callers hold no tool permissions to check)."""
    if not path.startswith("/"):
        raise ProvisioningError(f"The path must start with /: {path!r}")
    if kind not in ServiceKind.values:
        raise ProvisioningError(f"Unknown kind {kind!r}; choose from {', '.join(ServiceKind.values)}")
    if lb_policy not in LoadBalancingPolicy.values:
        raise ProvisioningError(f"Unknown policy {lb_policy!r}; choose from {', '.join(LoadBalancingPolicy.values)}")
    urls = _validated_urls(upstream_urls)
    name = name or default_route_name(path)
    with transaction.atomic():
        taken = Route.objects.filter(path=path).exclude(name=name).first()
        if taken is not None:
            raise ProvisioningError(f"The path {path} is already routed by {taken.name!r}.")
        route = Route.objects.filter(name=name).select_related("service").first()
        if route is not None and route.path != path:
            raise ProvisioningError(f"A route named {name!r} already serves {route.path}; pick another --name.")
        created = route is None
        if route is None:
            service, _ = Service.objects.get_or_create(name=name, defaults={"kind": kind, "lb_policy": lb_policy})
            route = Route.objects.create(
                name=name,
                path=path,
                path_match=PathMatch.PREFIX,
                service=service,
                allow_anonymous=open_to_anonymous,
                tool_permissions=not open_to_anonymous,
            )
        service = route.service
        known = set(service.targets.values_list("url", flat=True))
        added = [url for url in urls if url not in known]
        for url in added:
            Target.objects.create(service=service, url=url)
    return ProvisionResult(route=route, service=service, created=created, targets_added=added)
