"""The gateway's own tokens: HS256 JWTs issued by djangorestframework-simplejwt, verified on
every request with PyJWT.

A login yields a refresh token (7 days) and an access token (1 hour), both bound to a gateway
session (``sessionId``); ending the session ends both, whatever their ``exp`` says. Claims:

    userId, sessionId, roles, permissions   who, which login, what they held at login
    iss, iat, exp, jti, token_type         issuer, lifetime, identity, access or refresh

``roles`` and ``permissions`` tell the client what it may do; the gateway itself authorizes
from its live directory (``authn/directory.py``), so taking a role away does not wait an hour.

Verification is explicit rather than simplejwt's ``AccessToken(token)`` so every refusal can say
exactly what is wrong (expired, wrong issuer, bad signature, a refresh token presented as an
access token, ...), and only HS256 is ever accepted: ``alg: none`` and RS/HS key confusion are
refused by the algorithm list before any key is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework_simplejwt.tokens import RefreshToken

from authn.directory import CachedUser
from authn.errors import AuthenticationFailed

ACCESS = "access"
REFRESH = "refresh"
USER_CLAIM = "userId"
SESSION_CLAIM = "sessionId"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "jti", USER_CLAIM, SESSION_CLAIM, "token_type"]

EXPIRED = "The token has expired"
WRONG_ISSUER = "The token was issued by another issuer"
BAD_SIGNATURE = "The token signature is not valid"
BAD_ALGORITHM = "The token algorithm is not accepted; only HS256 tokens of this gateway are"
MALFORMED = "The token is malformed"
NOT_YET_VALID = "The token is not valid yet"
MISSING_CLAIM = "The token lacks the {claim} claim"
REFRESH_AS_ACCESS = "A refresh token cannot be used as an access token"
BAD_CLAIMS = "The token claims are malformed"

_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, EXPIRED),
    (jwt.InvalidIssuerError, WRONG_ISSUER),
    (jwt.InvalidSignatureError, BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, BAD_ALGORITHM),
    (jwt.ImmatureSignatureError, NOT_YET_VALID),
)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: str
    refresh: str
    session_id: str


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str


def issue_token_pair(user: AbstractBaseUser, cached: CachedUser, session_id: str) -> TokenPair:
    """A refresh token and its access token for ``user``'s new session ``session_id``."""
    refresh = RefreshToken.for_user(user)  # also records it as outstanding (blacklist app)
    refresh[USER_CLAIM] = user.pk  # simplejwt writes it as a string; the claim is the numeric id
    refresh[SESSION_CLAIM] = session_id
    refresh["roles"] = sorted(cached.roles)
    refresh["permissions"] = list(cached.grants.names())
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh), session_id=session_id)


def decode_verified(token: str, expected_type: str) -> dict[str, Any]:
    """The claims of a token this gateway signed, verified: signature, algorithm, expiry,
    issuer, required claims and type. Anything else raises AuthenticationFailed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            jwt_setting("SIGNING_KEY"),
            algorithms=[jwt_setting("ALGORITHM")],
            issuer=jwt_setting("ISSUER"),
            options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            leeway=0,
        )
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(MISSING_CLAIM.format(claim=exc.claim)) from None
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed(refusal_for(exc, _REFUSALS, MALFORMED)) from None
    if claims["token_type"] != expected_type:
        raise AuthenticationFailed(REFRESH_AS_ACCESS if expected_type == ACCESS else "The token is not a refresh token")
    return claims


def jwt_setting(name: str) -> str:
    """One of simplejwt's string settings (the key, the algorithm, the issuer), read live so
    the verifier always agrees with the issuer."""
    return str(settings.SIMPLE_JWT[name])


def verify_access_token(token: str) -> AccessClaims:
    """Who an access token speaks for; the session is checked by the caller (it is state)."""
    claims = decode_verified(token, ACCESS)
    user_id, session_id = claims[USER_CLAIM], claims[SESSION_CLAIM]
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not isinstance(session_id, str) or not session_id:
        raise AuthenticationFailed(BAD_CLAIMS)
    return AccessClaims(user_id=user_id, session_id=session_id)


def refusal_for(
    exc: jwt.PyJWTError, refusals: tuple[tuple[type[jwt.InvalidTokenError], str], ...], otherwise: str
) -> str:
    """The message for PyJWT's ``exc``: the first of ``refusals`` whose error type it is."""
    for error_type, detail in refusals:
        if isinstance(exc, error_type):
            return detail
    return otherwise


def unverified_issuer(token: str) -> str:
    """The ``iss`` a JWT claims, read without verifying anything: only to pick the verifier."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise AuthenticationFailed(MALFORMED) from None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else ""


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts separated by dots (a JWS in compact form)."""
    return token.count(".") == 2
