"""The gateway's own authentication endpoints, and its OAuth protected-resource metadata.

    POST /api/v1/auth/token/          {"username", "password"} -> access + refresh, a new session
    POST /api/v1/auth/token/refresh/  {"refresh"} -> a new access and a new refresh token; the
                                      used refresh token is blacklisted (rotation)
    POST /api/v1/auth/logout/         Bearer access token (or {"refresh"}) -> the session ends,
                                      and with it every token issued for it, in every process
    GET  /.well-known/oauth-protected-resource[/<path>]   RFC 9728 metadata

Each endpoint is rate-limited per client IP (django-ratelimit) and answers errors as
problem+json. Plain Django views rather than DRF ones: four small endpoints whose error shapes
must match the rest of the gateway exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate as check_password
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.core import is_ratelimited
from rest_framework.exceptions import APIException
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from authn import directory, oidc, sessions, tokens
from authn.checks import ACCESS_LIFETIME, REFRESH_LIFETIME
from authn.errors import AuthenticationFailed
from gateway_project.errors import BadRequest, GatewayError, MethodNotAllowed, render_error
from gateway_project.state import StateStoreUnavailable

WRONG_CREDENTIALS = "The username or password is wrong, or the account is disabled"
NEEDS_USERNAME_AND_PASSWORD = 'Send {"username": "…", "password": "…"} as JSON or form fields'
NEEDS_REFRESH = 'Send {"refresh": "<refresh token>"} as JSON or form fields'
NEEDS_TOKEN_TO_LOGOUT = "Send the session's access token as Authorization: Bearer, or its refresh token as {\"refresh\": …}"
REFRESH_REFUSED = "The refresh token is not valid: {reason}"
SESSION_ENDED = "The session of this token has ended"


class TooManyAttempts(GatewayError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self) -> None:
        super().__init__("Too many attempts from this address; wait a minute", headers={"Retry-After": "60"})


class SessionStoreDown(GatewayError):
    status = 503
    code = "sessions_unavailable"
    title = "Sessions cannot be checked right now"


View = Callable[[HttpRequest], HttpResponse]


def auth_endpoint(group: str, rate_setting: str) -> Callable[[View], View]:
    """POST only, CSRF-exempt (no cookies are used), rate-limited per IP, errors as problem+json."""

    def decorate(view: View) -> View:
        @csrf_exempt
        def endpoint(request: HttpRequest) -> HttpResponse:
            try:
                if request.method != "POST":
                    raise MethodNotAllowed("Use POST", headers={"Allow": "POST"})
                rate = getattr(settings, rate_setting)
                if is_ratelimited(request, group=group, key="ip", rate=rate, method="POST", increment=True):
                    raise TooManyAttempts()
                return view(request)
            except GatewayError as error:
                return render_error(error, jsonrpc=False, instance=request.path)
            except StateStoreUnavailable:
                return render_error(SessionStoreDown(), jsonrpc=False, instance=request.path)

        return endpoint

    return decorate


def request_fields(request: HttpRequest) -> dict[str, Any]:
    """The posted fields, from a JSON object or a form."""
    if request.content_type == "application/json":
        try:
            fields = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            raise BadRequest("The body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise BadRequest("The body must be a JSON object")
        return fields
    return request.POST.dict()


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


@auth_endpoint("auth-token", "GATEWAY_AUTH_TOKEN_RATE_LIMIT")
def obtain_token(request: HttpRequest) -> HttpResponse:
    fields = request_fields(request)
    username, password = fields.get("username"), fields.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise BadRequest(NEEDS_USERNAME_AND_PASSWORD)
    user = check_password(request, username=username, password=password)
    cached = directory.find_user(user.pk) if user is not None else None
    if user is None or cached is None or not cached.active:
        raise AuthenticationFailed(WRONG_CREDENTIALS)
    session_id = sessions.start_session(
        user, client_ip=_client_ip(request), user_agent=request.headers.get("User-Agent", "")[:512]
    )
    pair = tokens.issue_token_pair(user, cached, session_id)
    return JsonResponse(token_answer(pair.access, pair.refresh, session_id))


def token_answer(access: str, refresh: str, session_id: str) -> dict[str, Any]:
    return {
        "access": access,
        "refresh": refresh,
        "token_type": "Bearer",
        "expires_in": int(ACCESS_LIFETIME.total_seconds()),
        "refresh_expires_in": int(REFRESH_LIFETIME.total_seconds()),
        "session_id": session_id,
    }


@auth_endpoint("auth-refresh", "GATEWAY_AUTH_REFRESH_RATE_LIMIT")
def refresh_token(request: HttpRequest) -> HttpResponse:
    raw = request_fields(request).get("refresh")
    if not isinstance(raw, str) or not raw:
        raise BadRequest(NEEDS_REFRESH)
    claims = tokens.decode_verified(raw, tokens.REFRESH)
    session_id = claims[tokens.SESSION_CLAIM]
    if not sessions.touch_session(session_id):
        raise AuthenticationFailed(SESSION_ENDED)
    user = directory.find_user(claims[tokens.USER_CLAIM])
    if user is None or not user.active:
        raise AuthenticationFailed("The user of this token is unknown or deactivated")
    # simplejwt's serializer does the rotation: checks the blacklist, blacklists the used
    # token, and issues the new pair (claims such as sessionId carry over).
    serializer = TokenRefreshSerializer(data={"refresh": raw})
    try:
        serializer.is_valid(raise_exception=True)
    except (TokenError, APIException) as exc:  # blacklisted, or its user vanished meanwhile
        raise AuthenticationFailed(REFRESH_REFUSED.format(reason=_reason(exc))) from None
    data = serializer.validated_data
    return JsonResponse(token_answer(data["access"], data["refresh"], session_id))


def _reason(exc: Exception) -> str:
    detail = getattr(exc, "detail", None)
    text = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail or exc)
    return text.replace('"', "'").replace("\\", "/").rstrip(".").lower()


@auth_endpoint("auth-logout", "GATEWAY_AUTH_REFRESH_RATE_LIMIT")
def logout(request: HttpRequest) -> HttpResponse:
    session_id = _session_to_end(request)
    sessions.end_session(session_id)
    return HttpResponse(status=204)


def _session_to_end(request: HttpRequest) -> str:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and tokens.looks_like_jwt(token.strip()):
        return tokens.verify_access_token(token.strip()).session_id
    raw = request_fields(request).get("refresh")
    if isinstance(raw, str) and raw:
        return str(tokens.decode_verified(raw, tokens.REFRESH)[tokens.SESSION_CLAIM])
    raise AuthenticationFailed(NEEDS_TOKEN_TO_LOGOUT.replace('"', "'"))


def protected_resource_metadata(request: HttpRequest, resource_path: str = "") -> HttpResponse:
    """RFC 9728: where an MCP client learns which authorization servers issue tokens for this
    gateway. One resource (the gateway's public URL) covers every route under it."""
    if request.method not in ("GET", "HEAD"):
        error = MethodNotAllowed("Use GET", headers={"Allow": "GET, HEAD"})
        return render_error(error, jsonrpc=False, instance=request.path)
    document = {
        "resource": settings.GATEWAY_PUBLIC_URL,
        "authorization_servers": oidc.authorization_servers(),
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP gateway",
    }
    return JsonResponse(document)
