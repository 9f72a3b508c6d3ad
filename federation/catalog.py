"""A virtual server's catalog: what its clients see, built from its members' lists.

Per member, in member order: items the rules expose (``Member.unlisted_items`` and each
``ExposureRule``), named ``<prefix>_<name>`` or as renamed, with the description override, and
for tools the pinned arguments taken out of the input schema. Tools then pass the pinning
policy (``pinning.py``): under ``block`` a changed or unapproved tool is held back. A member
that is down contributes nothing but an entry in ``down``. Names are unique: an item whose
exposed name is taken already is left out, with a warning. Resources keep their URIs (a prefix
would make them other URIs); a URI two members list is served by the first.

Building is pure; ``current_catalog`` keeps the catalog per process and builds it again only
when the configuration or a member's lists changed, which is also when new pinning alerts
fire and members' event streams are watched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation import member_lists, pinning, watch
from federation.member_lists import MemberLists
from federation.models import ItemKind, exposed_item_name
from federation.pinning import UnapprovedTool, Verdict
from federation.snapshot import MemberConfig, RuleConfig, VirtualServerConfig

logger = logging.getLogger(__name__)

LIST_CHANGED_CAPABILITY = {"listChanged": True}
SERVED_CAPABILITIES = ("tools", "prompts", "resources")


@dataclass(frozen=True, slots=True)
class ExposedItem:
    """One tool, prompt, resource or resource template as clients see it."""

    name: str  # the exposed name; a resource's uri, a template's uriTemplate
    member: MemberConfig
    upstream_name: str  # the member's own name (or uri)
    definition: Mapping[str, Any]  # as listed to clients
    pinned_arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Catalog:
    tools: tuple[ExposedItem, ...] = ()
    prompts: tuple[ExposedItem, ...] = ()
    resources: tuple[ExposedItem, ...] = ()
    resource_templates: tuple[ExposedItem, ...] = ()
    unapproved: tuple[UnapprovedTool, ...] = ()
    down: Mapping[str, str] = field(default_factory=dict)  # member prefix -> why
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    # Per list, a digest of what clients see: when one moves, they are told it changed.
    digests: Mapping[str, str] = field(default_factory=dict)

    # The same items by name (a resource by uri), for calls.
    tools_by_name: Mapping[str, ExposedItem] = field(default_factory=dict)
    prompts_by_name: Mapping[str, ExposedItem] = field(default_factory=dict)
    resources_by_uri: Mapping[str, ExposedItem] = field(default_factory=dict)

    def resource(self, uri: str) -> ExposedItem | None:
        """The resource listed under ``uri``, else the first template ``uri`` expands."""
        listed = self.resources_by_uri.get(uri)
        if listed is not None:
            return listed
        return next((t for t in self.resource_templates if template_pattern(t.name).fullmatch(uri)), None)

    def held_back(self, name: str) -> UnapprovedTool | None:
        return next((t for t in self.unapproved if t.held_back and t.exposed_name == name), None)


# --- building ------------------------------------------------------------------------------


def build_catalog(config: VirtualServerConfig, lists: Mapping[int, MemberLists]) -> Catalog:
    builder = _Builder(config)
    for member in config.members:
        member_lists_now = lists.get(member.service.id)
        if member_lists_now is None or not member_lists_now.up:
            builder.down[member.prefix] = member_lists_now.error if member_lists_now else "not asked yet"
        else:
            builder.add_member(member, member_lists_now)
        if member_lists_now is not None:
            builder.capabilities.update(
                (kind, LIST_CHANGED_CAPABILITY) for kind in SERVED_CAPABILITIES if kind in member_lists_now.capabilities
            )
    return builder.catalog()


class _Builder:
    def __init__(self, config: VirtualServerConfig) -> None:
        self.config = config
        self.items: dict[str, list[ExposedItem]] = {"tools": [], "prompts": [], "resources": [], "resourceTemplates": []}
        self.taken: dict[str, set[str]] = {key: set() for key in self.items}
        self.unapproved: list[UnapprovedTool] = []
        self.down: dict[str, str] = {}
        self.capabilities: dict[str, Any] = {}

    def add_member(self, member: MemberConfig, lists: MemberLists) -> None:
        for tool in lists.of("tools"):
            self._add_tool(member, tool)
        for prompt in lists.of("prompts"):
            self._add_named(member, "prompts", ItemKind.PROMPT, prompt, "name")
        for resource in lists.of("resources"):
            self._add_named(member, "resources", ItemKind.RESOURCE, resource, "uri")
        for template in lists.of("resourceTemplates"):
            self._add_named(member, "resourceTemplates", ItemKind.RESOURCE, template, "uriTemplate")

    def _add_tool(self, member: MemberConfig, tool: Mapping[str, Any]) -> None:
        name = tool.get("name")
        if not isinstance(name, str) or not member.exposes(ItemKind.TOOL, name):
            return
        rule = member.rule_for(ItemKind.TOOL, name)
        exposed = (rule.exposed_name if rule else "") or exposed_item_name(member.prefix, name)
        if self.config.pins_tools:
            digest = pinning.definition_digest(tool)
            verdict = pinning.verdict_for(member, name, digest)
            if verdict != Verdict.APPROVED:
                held = self.config.blocks_unapproved
                self.unapproved.append(UnapprovedTool(member, name, exposed, verdict, digest, tool, held_back=held))
                if held:
                    return
        pinned = dict(rule.pinned_arguments) if rule else {}
        definition = exposed_tool_definition(tool, exposed, rule)
        self._keep("tools", ExposedItem(exposed, member, name, definition, pinned))

    def _add_named(self, member: MemberConfig, key: str, kind: str, item: Mapping[str, Any], identity: str) -> None:
        name = item.get(identity)
        if not isinstance(name, str) or not member.exposes(kind, name):
            return
        rule = member.rule_for(kind, name)
        exposed = name if kind == ItemKind.RESOURCE else (rule.exposed_name if rule else "") or exposed_item_name(member.prefix, name)
        definition: dict[str, Any] = {**item, identity: exposed}
        if rule is not None and rule.description:
            definition["description"] = rule.description
        self._keep(key, ExposedItem(exposed, member, name, definition))

    def _keep(self, key: str, item: ExposedItem) -> None:
        if item.name in self.taken[key]:
            logger.warning(
                "virtual server %s: %s is exposed twice; the one from %s is left out", self.config.name, item.name, item.member.prefix
            )
            return
        self.taken[key].add(item.name)
        self.items[key].append(item)

    def catalog(self) -> Catalog:
        return Catalog(
            tools=tuple(self.items["tools"]),
            prompts=tuple(self.items["prompts"]),
            resources=tuple(self.items["resources"]),
            resource_templates=tuple(self.items["resourceTemplates"]),
            unapproved=tuple(self.unapproved),
            down=dict(self.down),
            capabilities=dict(self.capabilities),
            digests={key: _digest(items) for key, items in self.items.items()},
            tools_by_name={item.name: item for item in self.items["tools"]},
            prompts_by_name={item.name: item for item in self.items["prompts"]},
            resources_by_uri={item.name: item for item in self.items["resources"]},
        )


def exposed_tool_definition(tool: Mapping[str, Any], exposed_name: str, rule: RuleConfig | None) -> dict[str, Any]:
    """The tool as clients see it: renamed, re-described, its pinned arguments gone from the schema."""
    definition = {**tool, "name": exposed_name}
    if rule is None:
        return definition
    if rule.description:
        definition["description"] = rule.description
    schema = tool.get("inputSchema")
    if rule.pinned_arguments and isinstance(schema, dict):
        pinned = set(rule.pinned_arguments)
        properties = schema.get("properties")
        required = schema.get("required")
        schema = {**schema}
        if isinstance(properties, dict):
            schema["properties"] = {key: value for key, value in properties.items() if key not in pinned}
        if isinstance(required, list):
            schema["required"] = [key for key in required if key not in pinned]
        definition["inputSchema"] = schema
    return definition


def _digest(items: list[ExposedItem]) -> str:
    canonical = json.dumps([item.definition for item in items], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


_template_patterns: dict[str, re.Pattern[str]] = {}
TEMPLATE_EXPRESSION = re.compile(r"\{([+#./;?&]?)[^}]*\}")


def template_pattern(uri_template: str) -> re.Pattern[str]:
    """A regex a URI built from an RFC 6570 template matches: ``{name}`` is one path segment,
    ``{+path}`` (and the other operators) anything."""
    pattern = _template_patterns.get(uri_template)
    if pattern is None:
        parts: list[str] = []
        position = 0
        for expression in TEMPLATE_EXPRESSION.finditer(uri_template):
            parts.append(re.escape(uri_template[position : expression.start()]))
            parts.append("[^/?#]+" if expression.group(1) == "" else ".*")
            position = expression.end()
        parts.append(re.escape(uri_template[position:]))
        pattern = _template_patterns[uri_template] = re.compile("".join(parts))
    return pattern


# --- the per-process catalog -------------------------------------------------------------------

# Per virtual server: the configuration and member tokens it was built from, and the catalog.
_built: dict[int, tuple[VirtualServerConfig, tuple[str, ...], Catalog]] = {}


def current_catalog(config: VirtualServerConfig) -> Catalog:
    """The catalog for the members' current lists (one state-store read when nothing changed)."""
    services = [member.service for member in config.members]
    lists = member_lists.current_lists(services)
    tokens = tuple(lists[service.id].token for service in services)
    built = _built.get(config.id)
    if built is not None and built[0] is config and built[1] == tokens:
        return built[2]
    catalog = build_catalog(config, lists)
    _built[config.id] = (config, tokens, catalog)
    pinning.alert_on(config, catalog.unapproved)
    for member in config.members:
        if lists[member.service.id].up:
            watch.ensure_watching(member.service, lists[member.service.id].capabilities)
    return catalog


def forget_built() -> None:
    """Drop this process's catalogs (tests)."""
    _built.clear()
