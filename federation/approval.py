"""Reviewing and approving a virtual server's tool definitions (the admin's diff and button).

A review fetches every member's tools now (an operator approves what members serve at this
moment, not what was cached) and compares each selected tool with its approval: unchanged,
changed (with a line diff of the approved and the current definition), new, or removed (an
approval whose tool is gone). Approving takes the digests the operator was shown: if a member
changed a tool in between, nothing is approved and the review must be looked at again, so an
approval never covers a definition nobody saw. Approvals of a member that is down are kept.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from federation import member_lists, pinning
from federation.models import ApprovedTool, ItemKind, PinningAlert, VirtualServer, exposed_item_name
from federation.snapshot import compile_virtual_server

UNCHANGED, CHANGED, NEW, REMOVED = "unchanged", "changed", "new", "removed"


@dataclass(frozen=True, slots=True)
class ToolReview:
    member_id: int
    member_prefix: str
    tool_name: str
    exposed_name: str
    status: str  # unchanged | changed | new | removed
    digest: str  # of the current definition ("" when removed)
    approved: Mapping[str, Any] | None
    current: Mapping[str, Any] | None
    diff: list[tuple[str, str]] = field(default_factory=list)  # (added | removed | context, line)

    @property
    def shown(self) -> tuple[int, str, str]:
        """What approving this row approves."""
        return (self.member_id, self.tool_name, self.digest)


@dataclass(frozen=True, slots=True)
class Review:
    tools: list[ToolReview]
    down: dict[str, str]  # member prefix -> why it could not be asked

    @property
    def pending(self) -> list[ToolReview]:
        return [tool for tool in self.tools if tool.status != UNCHANGED]

    @property
    def shown(self) -> set[tuple[int, str, str]]:
        return {tool.shown for tool in self.tools if tool.status != REMOVED}


def review(server: VirtualServer) -> Review:
    config = compile_virtual_server(server)
    fetched = {lists.service_id: lists for lists in member_lists.refresh_many([m.service for m in config.members])}
    approvals: dict[tuple[int, str], ApprovedTool] = {
        (approval.member_id, approval.tool_name): approval
        for approval in ApprovedTool.objects.filter(member__virtual_server=server)
    }
    tools: list[ToolReview] = []
    down: dict[str, str] = {}
    for member in config.members:
        lists = fetched[member.service.id]
        if not lists.up:
            down[member.prefix] = lists.error
            continue
        seen: set[str] = set()
        for tool in lists.of("tools"):
            name = tool.get("name")
            if not isinstance(name, str) or not member.exposes(ItemKind.TOOL, name):
                continue
            seen.add(name)
            rule = member.rule_for(ItemKind.TOOL, name)
            exposed = (rule.exposed_name if rule else "") or exposed_item_name(member.prefix, name)
            approval = approvals.get((member.id, name))
            tools.append(_reviewed(member.id, member.prefix, name, exposed, tool, approval))
        tools.extend(
            _removed(member.prefix, approval)
            for (member_id, name), approval in approvals.items()
            if member_id == member.id and name not in seen
        )
    return Review(tools=tools, down=down)


def _reviewed(
    member_id: int, prefix: str, name: str, exposed: str, tool: Mapping[str, Any], approval: ApprovedTool | None
) -> ToolReview:
    current = pinning.pinned_definition(tool)
    digest = pinning.definition_digest(tool)
    if approval is None:
        return ToolReview(member_id, prefix, name, exposed, NEW, digest, None, current, _diff(None, current))
    status = UNCHANGED if approval.digest == digest else CHANGED
    diff = _diff(approval.definition, current) if status == CHANGED else []
    return ToolReview(member_id, prefix, name, exposed, status, digest, approval.definition, current, diff)


def _removed(prefix: str, approval: ApprovedTool) -> ToolReview:
    return ToolReview(
        approval.member_id, prefix, approval.tool_name, approval.tool_name, REMOVED, "", approval.definition, None
    )


def _diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[tuple[str, str]]:
    def lines(definition: Mapping[str, Any] | None) -> list[str]:
        return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines() if definition else []

    classes = {"+": "added", "-": "removed", " ": "context"}
    return [
        (classes[line[0]], line)
        for line in difflib.unified_diff(lines(old), lines(new), "approved", "current", lineterm="", n=3)
        if line[:1] in classes and not line.startswith(("+++", "---"))
    ]


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    approved: int
    stale: bool  # definitions moved since the review shown: nothing was approved


def approve(server: VirtualServer, shown: set[tuple[int, str, str]], username: str) -> ApprovalOutcome:
    """Approve the current definitions, provided they are still the ones shown."""
    current = review(server)
    if current.shown != shown:
        return ApprovalOutcome(approved=0, stale=True)
    down_prefixes = set(current.down)
    with transaction.atomic():
        for tool in current.tools:
            if tool.status == REMOVED:
                ApprovedTool.objects.filter(member_id=tool.member_id, tool_name=tool.tool_name).delete()
            elif tool.status != UNCHANGED:
                assert tool.current is not None
                ApprovedTool.objects.update_or_create(
                    member_id=tool.member_id,
                    tool_name=tool.tool_name,
                    defaults={"digest": tool.digest, "definition": dict(tool.current), "approved_by": username},
                )
        PinningAlert.objects.filter(virtual_server=server, resolved_at__isnull=True).exclude(
            member__prefix__in=down_prefixes
        ).update(resolved_at=timezone.now())
        server.approved_at = timezone.now()
        server.approved_by = username
        server.save()
    return ApprovalOutcome(approved=len(current.pending), stale=False)
