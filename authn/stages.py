"""Authentication on the request path: who is asking.

A credential arrives as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No credential
at all continues as ``anonymous``; a credential that cannot be accepted is refused with 401
and a ``WWW-Authenticate`` challenge (RFC 6750), never silently downgraded to anonymous. A
Bearer token that is not an API key (a JWT) is refused too until JWT authentication exists.

The key is looked up in ``security.api_keys``' in-process cache: no database query.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from authn.errors import AuthenticationFailed
from authn.permissions import Grants
from authn.principal import Principal
from gateway_project.exchange import Exchange
from security import api_keys

AUTHORIZATION_HEADER = "Authorization"
API_KEY_HEADER = "X-API-Key"
BEARER_SCHEME = "bearer"

# Also sent as the challenge's error_description, so none may contain '"' or '\'.
UNKNOWN_KEY = "The API key is not valid"
MALFORMED_KEY = "The API key is malformed"
REVOKED_KEY = "The API key has been revoked"
DISABLED_KEY = "The API key is disabled"
OWNER_INACTIVE_KEY = "The API key belongs to a deactivated user"
EXPIRED_KEY = "The API key has expired"
NOT_AN_API_KEY = "The bearer token is not an API key; only API keys are accepted"
UNSUPPORTED_SCHEME = "Only the Bearer authorization scheme is supported"
CONFLICTING_CREDENTIALS = "Authorization and X-API-Key carry different credentials; send one"

REFUSAL_MESSAGES = {
    api_keys.REVOKED: REVOKED_KEY,
    api_keys.DISABLED: DISABLED_KEY,
    api_keys.OWNER_INACTIVE: OWNER_INACTIVE_KEY,
    api_keys.EXPIRED: EXPIRED_KEY,
}


def authenticate(exchange: Exchange) -> HttpResponse | None:
    """Set the exchange's principal from its API key; 401 for any credential not accepted."""
    presented = presented_credential(exchange.request)
    if presented is None:
        return None
    if not api_keys.looks_like_api_key(presented):
        raise AuthenticationFailed(MALFORMED_KEY)
    key = api_keys.find_key(presented)
    if key is None:
        raise AuthenticationFailed(UNKNOWN_KEY)
    reason = key.refusal_reason(timezone.now())
    if reason is not None:
        raise AuthenticationFailed(REFUSAL_MESSAGES[reason])
    # The key, not its owner, is the principal: it is the unit of permissions and of
    # revocation, and it stays the same across rotation (sessions bound to it survive).
    exchange.principal = Principal(key.principal_id, grants=Grants.of(key.permissions), api_key_id=str(key.id))
    exchange.on_finish.append(lambda: api_keys.record_usage(key.id, exchange.elapsed_ms()))
    return None


def presented_credential(request: HttpRequest) -> str | None:
    """The API key the request carries, or None when it carries no credential at all."""
    authorization = request.headers.get(AUTHORIZATION_HEADER)
    api_key = request.headers.get(API_KEY_HEADER)
    bearer = bearer_token(authorization) if authorization is not None else None
    if bearer is not None and api_key is not None and bearer != api_key.strip():
        raise AuthenticationFailed(CONFLICTING_CREDENTIALS)
    if bearer is not None:
        return bearer
    return api_key.strip() if api_key is not None else None


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer`` header (the scheme is case-insensitive)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != BEARER_SCHEME:
        raise AuthenticationFailed(UNSUPPORTED_SCHEME)
    token = token.strip()
    if not token.startswith(api_keys.KEY_MARKER):
        # A JWT (or anything else): the JWT authentication of the next issue will take these.
        raise AuthenticationFailed(NOT_AN_API_KEY)
    return token
