"""Authorization on the request path: may this principal do this?

Two checks, both against the principal's grants (``authn/permissions.py``), no query:

- the route's ``required_permissions``: every one must be held (e.g. ``route:billing``);
- on MCP routes that check tool permissions, the JSON-RPC call itself: ``tools/call`` needs
  ``tool:<service>:<tool>``, ``prompts/get`` needs ``prompt:<service>:<name>``,
  ``resources/read`` needs ``resource:<service>:<uri>``. What a principal may not call it does
  not see either: list answers are filtered on the way back (``authn/list_filtering.py``).

An anonymous caller (on an open route) who lacks a permission gets 401, which tells an MCP
client to sign in; an authenticated one gets 403.
"""

from __future__ import annotations

from django.http import HttpResponse

from authn.errors import CredentialRequired, PermissionDenied
from authn.permissions import prompt_permission, resource_permission, tool_permission
from authn.principal import Principal
from gateway_project.exchange import Exchange
from security.jsonrpc import RpcMessage
from security.sanitization import safe_excerpt

ROUTE_NEEDS = "This route needs the permission {permission}"
TOOL_NOT_ALLOWED = "You may not call the tool {name}"
PROMPT_NOT_ALLOWED = "You may not get the prompt {name}"
RESOURCE_NOT_ALLOWED = "You may not read the resource {name}"


def authorize(exchange: Exchange) -> HttpResponse | None:
    route = exchange.route
    assert route is not None  # runs after find_route
    principal = exchange.principal
    for permission in route.required_permissions:
        if not principal.may(permission):
            _refuse(principal, ROUTE_NEEDS.format(permission=permission))
    if exchange.is_mcp and route.tool_permissions and exchange.rpc is not None:
        needed = permission_for_call(route.service.name, exchange.rpc)
        if needed is not None and not principal.may(needed[0]):
            _refuse(principal, needed[1])
    return None


def permission_for_call(service_name: str, rpc: RpcMessage) -> tuple[str, str] | None:
    """The permission a JSON-RPC call needs and the refusal that names it; None for methods
    that need none beyond the route (initialize, lists, pings, notifications)."""
    if rpc.method == "tools/call":
        return tool_permission(service_name, rpc.name), TOOL_NOT_ALLOWED.format(name=_echo(rpc.name))
    if rpc.method == "prompts/get":
        return prompt_permission(service_name, rpc.name), PROMPT_NOT_ALLOWED.format(name=_echo(rpc.name))
    if rpc.method == "resources/read":
        return resource_permission(service_name, rpc.uri), RESOURCE_NOT_ALLOWED.format(name=_echo(rpc.uri))
    return None


def _echo(name: str) -> str:
    """The client's own string, shortened and escaped, as every message echoing input is."""
    return safe_excerpt(name, 100)


def _refuse(principal: Principal, detail: str) -> None:
    if not principal.is_authenticated:
        raise CredentialRequired()
    raise PermissionDenied(detail)
