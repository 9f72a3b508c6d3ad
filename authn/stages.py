"""Authentication on the request path: who is asking.

A credential arrives as ``Authorization: Bearer <token>`` or ``X-API-Key: <key>``. A bearer token
is told apart by its format: ``mgw_…`` is an API key, three dot-separated parts a JWT (the
gateway's own HS256 token, or an external identity provider's, chosen by its ``iss``).

No credential at all continues as anonymous on a route opened to anonymous callers, and gets
401 everywhere else. A credential that cannot be accepted is refused with 401 and a
``WWW-Authenticate`` challenge (RFC 6750), never silently downgraded to anonymous.

Nothing here queries the database: API keys, users and providers come from in-process caches;
the only shared state read is the session's sliding expiry (one state-store call per JWT).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from authn import directory, oidc, sessions, tokens
from authn.errors import AuthenticationFailed, CredentialRequired
from authn.permissions import Grants
from authn.principal import Principal
from gateway_project.errors import GatewayError
from gateway_project.exchange import Exchange
from gateway_project.state import StateStoreUnavailable
from security import api_keys

BEARER_SCHEME = "bearer"

# Also sent as the challenge's error_description, so none may contain '"' or '\'.
UNKNOWN_KEY = "The API key is not valid"
MALFORMED_KEY = "The API key is malformed"
MALFORMED_BEARER = "The bearer token is neither an API key nor a JWT"
REVOKED_KEY = "The API key has been revoked"
DISABLED_KEY = "The API key is disabled"
OWNER_INACTIVE_KEY = "The API key belongs to a deactivated user"
EXPIRED_KEY = "The API key has expired"
UNSUPPORTED_SCHEME = "Only the Bearer authorization scheme is supported"
CONFLICTING_CREDENTIALS = "Authorization and X-API-Key carry different credentials; send one"
SESSION_ENDED = "The session of this token has ended"
USER_INACTIVE = "The user of this token is unknown or deactivated"


class SessionsUnavailable(GatewayError):
    """Raised when the session store cannot be read: a token of an ended session must not pass,
    so JWT requests fail closed (API keys, which have no session, keep working)."""

    status = 503
    code = "sessions_unavailable"
    title = "Sessions cannot be checked right now"

    def __init__(self) -> None:
        super().__init__(self.title, headers={"Retry-After": "5"})


REFUSAL_MESSAGES = {
    api_keys.REVOKED: REVOKED_KEY,
    api_keys.DISABLED: DISABLED_KEY,
    api_keys.OWNER_INACTIVE: OWNER_INACTIVE_KEY,
    api_keys.EXPIRED: EXPIRED_KEY,
}


def authenticate(exchange: Exchange) -> HttpResponse | None:
    """Attach the caller's principal; 401 for a refused credential, or for none where one is needed."""
    presented = presented_credential(exchange.request)
    if presented is None:
        assert exchange.route is not None  # runs after find_route
        if not exchange.route.allow_anonymous:
            raise CredentialRequired()
        return None
    token, as_bearer = presented
    if api_keys.looks_like_api_key(token):
        exchange.principal = principal_of_api_key(token)
        key_id = int(exchange.principal.api_key_id)
        exchange.on_finish.append(lambda: api_keys.record_usage(key_id, exchange.elapsed_ms()))
    elif as_bearer and tokens.looks_like_jwt(token):
        exchange.principal = principal_of_jwt(token)
    elif as_bearer and not token.startswith(api_keys.KEY_MARKER):
        raise AuthenticationFailed(MALFORMED_BEARER)
    else:
        raise AuthenticationFailed(MALFORMED_KEY)
    return None


def principal_of_api_key(presented: str) -> Principal:
    key = api_keys.find_key(presented)
    if key is None:
        raise AuthenticationFailed(UNKNOWN_KEY)
    reason = key.refusal_reason(timezone.now())
    if reason is not None:
        raise AuthenticationFailed(REFUSAL_MESSAGES[reason])
    # The key, not its owner, is the principal: it is the unit of permissions and of
    # revocation, and it stays the same across rotation (sessions bound to it survive).
    return Principal(key.principal_id, grants=Grants.of(key.permissions), api_key_id=str(key.id))


def principal_of_jwt(token: str) -> Principal:
    """The gateway's own token, or an external provider's when its issuer is a trusted one."""
    if oidc.trusted_issuers():  # only then is peeking at the issuer worth its cost
        issuer = tokens.unverified_issuer(token)
        if issuer != tokens.jwt_setting("ISSUER"):
            if not oidc.is_external_issuer(issuer):
                raise AuthenticationFailed(oidc.UNTRUSTED_ISSUER)
            return oidc.authenticate_external(token, issuer)
    claims = tokens.verify_access_token(token)
    try:
        alive = sessions.touch_session(claims.session_id)  # also slides its expiry
    except StateStoreUnavailable:
        raise SessionsUnavailable() from None
    if not alive:
        raise AuthenticationFailed(SESSION_ENDED)
    user = directory.find_user(claims.user_id)
    if user is None or not user.active:
        raise AuthenticationFailed(USER_INACTIVE)
    return Principal(
        f"user:{user.id}", user_id=user.id, roles=user.roles, grants=user.grants, session_id=claims.session_id
    )


def presented_credential(request: HttpRequest) -> tuple[str, bool] | None:
    """The token the request carries and whether it came as a Bearer token (only those may be
    JWTs), or None when it carries no credential at all."""
    # From META: request.headers would build a mapping of every header on first use.
    authorization = request.META.get("HTTP_AUTHORIZATION")
    api_key = request.META.get("HTTP_X_API_KEY")
    bearer = bearer_token(authorization) if authorization is not None else None
    if bearer is not None and api_key is not None and bearer != api_key.strip():
        raise AuthenticationFailed(CONFLICTING_CREDENTIALS)
    if bearer is not None:
        return bearer, True
    return (api_key.strip(), False) if api_key is not None else None


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer`` header (the scheme is case-insensitive)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != BEARER_SCHEME:
        raise AuthenticationFailed(UNSUPPORTED_SCHEME)
    return token.strip()
