"""The answers to ``tools/list``, ``prompts/list``, ``resources/list`` and
``resources/templates/list``: the catalog as the asking principal may see it, page by page.

Filtered by permission (on a route that checks tool permissions) before paging, so pages are
pages of what the principal may use: ``tool:<virtual server>:<exposed name>``, ``prompt:…``,
``resource:<virtual server>:<uri>`` (templates are not filtered: which expansion a principal
may read is decided per URI when it reads one). Cursors are opaque to clients: the list and
an offset, base64url-encoded; one the gateway did not hand out is refused (-32602).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authn.permissions import prompt_permission, resource_permission, tool_permission
from federation.catalog import Catalog, ExposedItem
from federation.conf import federation_settings
from federation.errors import InvalidCursor
from gateway_project.exchange import Exchange


@dataclass(frozen=True, slots=True)
class Listing:
    method: str
    items_key: str
    items: Callable[[Catalog], tuple[ExposedItem, ...]]
    permission_kind: str  # "" for lists not filtered by permission
    permission: Callable[[str, str], str] | None


LISTINGS = {
    listing.method: listing
    for listing in (
        Listing("tools/list", "tools", lambda catalog: catalog.tools, "tool", tool_permission),
        Listing("prompts/list", "prompts", lambda catalog: catalog.prompts, "prompt", prompt_permission),
        Listing("resources/list", "resources", lambda catalog: catalog.resources, "resource", resource_permission),
        Listing("resources/templates/list", "resourceTemplates", lambda catalog: catalog.resource_templates, "", None),
    )
}


def visible_items(exchange: Exchange, server_name: str, listing: Listing, catalog: Catalog) -> tuple[ExposedItem, ...]:
    """The items the exchange's principal may use (all of them on a route without tool permissions)."""
    items = listing.items(catalog)
    route = exchange.route
    principal = exchange.principal
    if listing.permission is None or route is None or not route.tool_permissions:
        return items
    if principal.grants.covers_everything(listing.permission_kind, server_name):
        return items
    permission = listing.permission
    return tuple(item for item in items if principal.may(permission(server_name, item.name)))


def list_result(exchange: Exchange, server_name: str, method: str, catalog: Catalog, params: Mapping[str, Any]) -> dict[str, Any]:
    """One page of a list, with ``nextCursor`` when more follow."""
    listing = LISTINGS[method]
    items = visible_items(exchange, server_name, listing, catalog)
    offset = cursor_offset(method, params.get("cursor"))
    page_size = federation_settings.page_size
    page = items[offset : offset + page_size]
    result: dict[str, Any] = {listing.items_key: [item.definition for item in page]}
    if offset + page_size < len(items):
        result["nextCursor"] = encode_cursor(method, offset + page_size)
    return result


def encode_cursor(method: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{method}|{offset}".encode()).decode().rstrip("=")


def cursor_offset(method: str, cursor: Any) -> int:
    if cursor is None:
        return 0
    if not isinstance(cursor, str) or len(cursor) > 200:
        raise InvalidCursor()
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor() from None
    named, _, offset = decoded.partition("|")
    if named != method or not offset.isdigit():
        raise InvalidCursor()
    return int(offset)
