"""The in-process, read-only copy of the virtual servers that the hot path reads.

Built from the database once, then again only when the config version moves (every save of a
virtual server, member, rule or approval bumps it, as routing's models do), so serving a
virtual server makes no database query once warm.

    >>> config = virtual_server_for_service(route.service.id)
    >>> [member.prefix for member in config.members]
    ['search', 'files']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.models import ItemKind, PinningPolicy, RuleAction, SessionScope, UnlistedItems, VirtualServer
from routing.config_version import ConfigCache
from routing.snapshot import ServiceConfig, service_config


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """One item's exposure: an ``ExposureRule`` compiled."""

    include: bool
    exposed_name: str  # "" keeps <prefix>_<name>
    description: str  # "" keeps the member's own
    pinned_arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberConfig:
    id: int
    prefix: str
    service: ServiceConfig
    expose_unlisted: bool
    per_client_sessions: bool
    rules: Mapping[tuple[str, str], RuleConfig]  # (kind, the member's name or uri) -> rule
    approved_digests: Mapping[str, str]  # tool name -> approved definition digest

    def rule_for(self, kind: str, name: str) -> RuleConfig | None:
        return self.rules.get((kind, name))

    def exposes(self, kind: str, name: str) -> bool:
        rule = self.rule_for(kind, name)
        return self.expose_unlisted if rule is None else rule.include


@dataclass(frozen=True, slots=True)
class VirtualServerConfig:
    id: int
    name: str  # also its service's name: tool permissions read tool:<name>:<exposed tool>
    service_id: int
    instructions: str
    pinning_policy: str
    ever_approved: bool  # before a first approval, nothing is "new since approval" to alert on
    members: tuple[MemberConfig, ...]  # in list order

    @property
    def pins_tools(self) -> bool:
        return self.pinning_policy != PinningPolicy.OFF

    @property
    def blocks_unapproved(self) -> bool:
        return self.pinning_policy == PinningPolicy.BLOCK


@dataclass(frozen=True, slots=True)
class FederationSnapshot:
    by_service_id: Mapping[int, VirtualServerConfig]
    # Every service some enabled virtual server uses, by id (the worker refreshes their lists).
    member_services: Mapping[int, ServiceConfig]

    def servers_using(self, service_id: int) -> list[VirtualServerConfig]:
        return [config for config in self.by_service_id.values() if any(m.service.id == service_id for m in config.members)]


def _rule_config(rule: Any) -> RuleConfig:
    return RuleConfig(
        include=rule.action == RuleAction.INCLUDE,
        exposed_name=rule.exposed_name if rule.kind != ItemKind.RESOURCE else "",
        description=rule.description,
        pinned_arguments=dict(rule.pinned_arguments or {}) if rule.kind == ItemKind.TOOL else {},
    )


def _member_config(member: Any) -> MemberConfig:
    return MemberConfig(
        id=member.id,
        prefix=member.prefix,
        service=service_config(member.service),
        expose_unlisted=member.unlisted_items == UnlistedItems.EXPOSE,
        per_client_sessions=member.session_scope == SessionScope.CLIENT,
        rules={(rule.kind, rule.name): _rule_config(rule) for rule in member.rules.all()},
        approved_digests={approval.tool_name: approval.digest for approval in member.approved_tools.all()},
    )


def compile_virtual_server(server: VirtualServer) -> VirtualServerConfig:
    """One virtual server row (members, rules and approvals prefetched, or read now) compiled."""
    assert server.service_id is not None
    return VirtualServerConfig(
        id=server.id,
        name=server.name,
        service_id=server.service_id,
        instructions=server.instructions,
        pinning_policy=server.pinning_policy,
        ever_approved=server.approved_at is not None,
        members=tuple(_member_config(member) for member in server.members.all()),
    )


def build_federation_snapshot() -> FederationSnapshot:
    servers = VirtualServer.objects.filter(enabled=True, service__isnull=False).prefetch_related(
        "members__rules", "members__approved_tools", "members__service__targets"
    )
    configs: dict[int, VirtualServerConfig] = {}
    member_services: dict[int, ServiceConfig] = {}
    for server in servers:
        config = configs[server.service_id or 0] = compile_virtual_server(server)
        member_services.update((member.service.id, member.service) for member in config.members)
    return FederationSnapshot(by_service_id=configs, member_services=member_services)



_snapshot: ConfigCache[FederationSnapshot] = ConfigCache(build_federation_snapshot)


def get_federation_snapshot() -> FederationSnapshot:
    return _snapshot.get()


def virtual_server_for_service(service_id: int) -> VirtualServerConfig | None:
    """The enabled virtual server a route's service stands for, or None."""
    return get_federation_snapshot().by_service_id.get(service_id)
