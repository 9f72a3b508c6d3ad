"""The refusals of authentication (401) and authorization (403).

Every 401 carries a ``WWW-Authenticate: Bearer`` challenge whose ``resource_metadata`` points at
the gateway's RFC 9728 document, which is how an MCP client learns where to get a token (MCP
authorization spec). A presented-but-refused credential adds ``error="invalid_token"`` and a
description (RFC 6750 §3); a missing one gets the bare challenge (RFC 6750 §3.1: no error code
when the request carried no credential at all).
"""

from __future__ import annotations

from django.conf import settings

from gateway_project.errors import GatewayError

WWW_AUTHENTICATE_HEADER = "WWW-Authenticate"
REALM = "mcp-gateway"
PROTECTED_RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"
# JSON-RPC has no standard code for "not allowed"; -32003 is the one MCP servers commonly use
# for forbidden, inside the implementation-defined server-error range.
JSONRPC_FORBIDDEN = -32003


def resource_metadata_url() -> str:
    return settings.GATEWAY_PUBLIC_URL + PROTECTED_RESOURCE_METADATA_PATH


def challenge(detail: str | None = None) -> str:
    """The ``WWW-Authenticate`` value; ``detail`` may not contain '"' or '\\'."""
    parts = [f'Bearer realm="{REALM}"', f'resource_metadata="{resource_metadata_url()}"']
    if detail is not None:
        parts += ['error="invalid_token"', f'error_description="{detail}"']
    return ", ".join(parts)


class AuthenticationFailed(GatewayError):
    """Raised when a request presents a credential that cannot be accepted (unknown, malformed,
    expired, revoked, badly signed, of an ended session), never when it presents none."""

    status = 401
    code = "invalid_credentials"
    title = "Invalid credentials"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={WWW_AUTHENTICATE_HEADER: challenge(detail)})


class CredentialRequired(GatewayError):
    """Raised when a route that is not open is called without any credential."""

    status = 401
    code = "credential_required"
    title = "Authentication required"

    def __init__(self) -> None:
        super().__init__(
            "This route needs a JWT or an API key (Authorization: Bearer …, or X-API-Key)",
            headers={WWW_AUTHENTICATE_HEADER: challenge()},
        )


class PermissionDenied(GatewayError):
    """Raised when an authenticated caller lacks a permission the request needs."""

    status = 403
    code = "forbidden"
    title = "Forbidden"
    jsonrpc_code = JSONRPC_FORBIDDEN
