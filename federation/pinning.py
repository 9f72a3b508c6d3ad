"""Tool-definition pinning: a tool is served as the operator approved it, or held back.

When an operator approves a virtual server, the gateway keeps, per tool, a SHA-256 of the
tool's name, description and input schema as its member served them (``ApprovedTool``). A
member that later serves a pinned tool differently ("rug pull": a description that now
carries instructions to the model, a schema that now asks for more) has it checked against
the virtual server's policy:

- ``block`` (the default): a changed tool is held back (neither listed nor callable) until
  an operator approves it; a tool that is new since approval appears only after approval;
- ``warn``: changed and new tools are served, and an alert fires;
- ``off``: definitions are not pinned.

An alert is a WARNING log line and a ``PinningAlert`` row (the admin shows it, with the diff
and the approve button); each definition alerts once. Hashes cover what the member serves,
not the operator's own overrides (renames, description overrides), so editing those needs no
new approval.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import DatabaseError

from federation.models import AlertKind, PinningAlert
from federation.snapshot import MemberConfig, VirtualServerConfig
from gateway_project.state import StateStoreUnavailable, get_state_store

logger = logging.getLogger("gateway.federation.pinning")

ALERT_MEMORY_SECONDS = 24 * 3600  # a definition alerts once a day at most, across processes


class Verdict(StrEnum):
    APPROVED = "approved"
    CHANGED = "changed"  # approved once, served differently now
    NEW = "new"  # never approved


def pinned_definition(tool: Mapping[str, Any]) -> dict[str, Any]:
    """What a pin covers: the name, description and input schema, as the member serves them."""
    return {
        "name": tool.get("name"),
        "description": tool.get("description") or "",
        "inputSchema": tool.get("inputSchema") or {},
    }


def definition_digest(tool: Mapping[str, Any]) -> str:
    canonical = json.dumps(pinned_definition(tool), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verdict_for(member: MemberConfig, name: str, digest: str) -> Verdict:
    approved = member.approved_digests.get(name)
    if approved is None:
        return Verdict.NEW
    return Verdict.APPROVED if approved == digest else Verdict.CHANGED


@dataclass(frozen=True, slots=True)
class UnapprovedTool:
    """A tool served differently from its approval (or never approved)."""

    member: MemberConfig
    name: str  # the member's own name
    exposed_name: str
    verdict: Verdict
    digest: str
    definition: Mapping[str, Any]
    held_back: bool


def alert_on(config: VirtualServerConfig, unapproved: Sequence[UnapprovedTool]) -> None:
    """Fire an alert for each definition not alerted on yet.

    Before a first approval every tool is "new": that is the state of a fresh virtual server,
    not news, so only changes alert then.
    """
    for tool in unapproved:
        if tool.verdict == Verdict.NEW and not config.ever_approved:
            continue
        if _first_sighting(tool):
            _record_alert(config, tool)


def _first_sighting(tool: UnapprovedTool) -> bool:
    approved = tool.member.approved_digests.get(tool.name, "none")
    key = f"federation:alerted:{tool.member.id}:{approved[:16]}:{tool.digest[:16]}"
    try:
        return get_state_store().set_if_absent(key, "1", ttl=ALERT_MEMORY_SECONDS)
    except StateStoreUnavailable:
        return True  # an alert twice beats none


def _record_alert(config: VirtualServerConfig, tool: UnapprovedTool) -> None:
    logger.warning(
        "virtual server %s: tool %s of member %s is %s since approval (%s)",
        config.name,
        tool.exposed_name,
        tool.member.prefix,
        "changed" if tool.verdict == Verdict.CHANGED else "new",
        "held back until approved" if tool.held_back else "served, policy warn",
    )
    try:
        alert, created = PinningAlert.objects.get_or_create(
            member_id=tool.member.id,
            tool_name=tool.name,
            digest=tool.digest,
            defaults={
                "virtual_server_id": config.id,
                "kind": AlertKind.CHANGED if tool.verdict == Verdict.CHANGED else AlertKind.NEW,
                "definition": pinned_definition(tool.definition),
                "held_back": tool.held_back,
            },
        )
        if not created and alert.resolved_at is not None:
            PinningAlert.objects.filter(pk=alert.pk).update(resolved_at=None)
    except DatabaseError:  # the alert is logged; serving must not fail for want of its row
        logger.exception("could not record the pinning alert for %s", tool.exposed_name)
