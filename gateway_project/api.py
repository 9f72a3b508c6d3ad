"""The REST API's building blocks, shared by every app's ``api.py``: who is calling, what they
may do, how often, how lists are paged, and how every error is answered.

- **Authentication** is the proxied routes' own (``authn.stages``): ``Authorization: Bearer``
  with the gateway's JWT (or a trusted external issuer's), or an API key as ``Bearer mgw_…`` or
  ``X-API-Key``. Staff signed in to the admin also get in with their session cookie (and CSRF),
  so the browsable API and the docs work in a browser.
- **Permission**: reading needs a staff user, or an API key holding ``api:read``; changing
  anything needs a staff user, or an API key holding ``api:write`` whose owner is staff.
- **Throttling**: ``GATEWAY_API_RATE_LIMIT`` requests per principal, counted in Django's cache
  (Redis in the scale-out shape, so every process shares the count).
- **Parsing**: JSON, nested no deeper than ``GATEWAY_MAX_JSON_DEPTH`` (as on proxied routes),
  holding only text a database can store.
- **Errors**: problem+json (RFC 9457) through ``render_error``, the gateway's one renderer;
  validation errors add an ``errors`` member with the messages per field.

The serializer and viewset bases every app's models go through are in ``api_models.py``. This
module must not import DRF's views: DRF imports the classes named in its settings while
importing its views.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpResponse
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from authn.errors import AuthenticationFailed, PermissionDenied, WWW_AUTHENTICATE_HEADER, challenge
from authn.principal import Principal
from authn.stages import MALFORMED_BEARER, MALFORMED_KEY, presented_credential, principal_of_api_key, principal_of_jwt
from authn.tokens import looks_like_jwt
from gateway_project.errors import GatewayError, render_error
from gateway_project.state import StateStoreUnavailable
from security.api_keys import KEY_MARKER, looks_like_api_key
from security.conf import security_settings
from security.models import ApiKey
from security.validation import json_nesting_depth

if TYPE_CHECKING:
    # Only for hints: DRF imports the classes below while importing its views, so this module
    # must not import rest_framework.views (nor viewsets, generics) at run time.
    from rest_framework.views import APIView

API_READ = "api:read"
API_WRITE = "api:write"

NOT_STAFF = "The REST API is for staff users (or API keys holding api:read / api:write)"
KEY_CANNOT_READ = "This API key does not hold api:read"
KEY_CANNOT_WRITE = "Changing the configuration needs an API key holding api:write"
KEY_OWNER_NOT_STAFF = "This API key holds api:write, but its owner is not a staff user"
CREDENTIAL_REQUIRED = "The REST API needs a JWT or an API key (Authorization: Bearer …, or X-API-Key)"
UNSTORABLE_TEXT = "The body holds text that cannot be stored: a NUL character (\\u0000) or a lone UTF-16 surrogate"


# --- errors ---------------------------------------------------------------------------------------


class InvalidRequest(GatewayError):
    """Raised when a body or a query parameter fails validation; ``errors`` says where."""

    status = 400
    code = "validation_failed"
    title = "The request is not valid"


class MalformedBody(GatewayError):
    """Raised when the body cannot be parsed at all (bad JSON or YAML)."""

    status = 400
    code = "malformed_body"
    title = "Malformed request body"


class ApiCredentialRequired(GatewayError):
    """Raised when an API request carries no credential at all."""

    status = 401
    code = "credential_required"
    title = "Authentication required"

    def __init__(self) -> None:
        super().__init__(CREDENTIAL_REQUIRED, headers={WWW_AUTHENTICATE_HEADER: challenge()})


class ResourceNotFound(GatewayError):
    """Raised when the object or the API endpoint asked for does not exist."""

    status = 404
    code = "not_found"
    title = "Not found"


class ApiMethodNotAllowed(GatewayError):
    """Raised when the endpoint exists but does not take this HTTP method."""

    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class NotAcceptable(GatewayError):
    """Raised when no representation the client accepts can be produced."""

    status = 406
    code = "not_acceptable"
    title = "Not acceptable"


class Conflict(GatewayError):
    """Raised when a change contradicts the current state (a service routes still use, a revoked
    key to rotate, a session already ended)."""

    status = 409
    code = "conflict"
    title = "Conflict"


class UnsupportedMediaType(GatewayError):
    """Raised when the body's Content-Type is not one the endpoint parses."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ApiRateLimited(GatewayError):
    """Raised when a principal sent more API requests than ``GATEWAY_API_RATE_LIMIT`` allows."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"


class StateStoreDown(GatewayError):
    """Raised when the answer needs the state store (sessions, cache, live status) and it is down."""

    status = 503
    code = "state_store_unavailable"
    title = "The state store cannot be reached"

    def __init__(self) -> None:
        super().__init__("The state store (Redis) cannot be reached; try again shortly", headers={"Retry-After": "5"})


class ApiError(GatewayError):
    """Raised for any other refusal DRF makes; status and code are copied from it."""

    def __init__(self, exc: exceptions.APIException) -> None:
        self.status = exc.status_code
        self.code = str(exc.default_code)
        self.title = str(exc.default_detail)
        super().__init__(str(exc.detail))


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's exception handler: every refusal as problem+json. None lets DRF re-raise the rest,
    which Django's own 500 handler answers as problem+json too."""
    request = context["request"]
    error, field_errors = gateway_error_of(exc)
    if error is None:
        return None
    return problem_response(error, request.path, field_errors)


def gateway_error_of(exc: Exception) -> tuple[GatewayError | None, Any]:
    """The GatewayError to answer ``exc`` with, and the per-field messages of a validation error."""
    if isinstance(exc, GatewayError):
        return exc, None
    if isinstance(exc, (exceptions.ValidationError, DjangoValidationError)):
        errors = field_messages(serializers.as_serializer_error(exc))
        return InvalidRequest(invalid_fields_detail(errors)), errors
    if isinstance(exc, (ProtectedError, RestrictedError)):
        return Conflict(protected_detail(exc)), None
    if isinstance(exc, IntegrityError):
        # Validation checks uniqueness first; only a concurrent write can still collide.
        return Conflict("Another change to the same object was saved at the same time; try again"), None
    if isinstance(exc, StateStoreUnavailable):
        return StateStoreDown(), None
    if isinstance(exc, Http404):
        return ResourceNotFound("No such object"), None
    if isinstance(exc, exceptions.APIException):
        return error_of_drf_exception(exc), None
    return None, None


def error_of_drf_exception(exc: exceptions.APIException) -> GatewayError:
    detail = str(exc.detail)
    if isinstance(exc, exceptions.NotAuthenticated):
        return ApiCredentialRequired()
    if isinstance(exc, exceptions.AuthenticationFailed):
        return AuthenticationFailed(detail.replace('"', "'").replace("\\", "/"))
    if isinstance(exc, exceptions.PermissionDenied):
        return PermissionDenied(detail)
    if isinstance(exc, exceptions.NotFound):
        return ResourceNotFound(detail)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return ApiMethodNotAllowed(detail)
    if isinstance(exc, exceptions.NotAcceptable):
        return NotAcceptable(detail)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return UnsupportedMediaType(detail)
    if isinstance(exc, exceptions.ParseError):
        return MalformedBody(detail)
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, int(exc.wait or 1))
        return ApiRateLimited(f"Too many API requests; try again in {wait} s", headers={"Retry-After": str(wait)})
    return ApiError(exc)


def problem_response(error: GatewayError, instance: str, field_errors: Any = None) -> HttpResponse:
    """``render_error`` owns the problem+json shape; a validation error adds its ``errors``."""
    response = render_error(error, jsonrpc=False, instance=instance)
    if field_errors:
        body = json.loads(response.content)
        body["errors"] = field_errors
        response.content = json.dumps(body).encode()
    return response


def field_messages(errors: dict[str, Any]) -> dict[str, Any]:
    """DRF's errors as plain JSON: ``{field: [message, …]}`` (nested for nested fields), the
    errors of no single field under ``non_field_errors``, as DRF and the admin put them."""
    return {_field_key(key): _plain(value) for key, value in errors.items()}


def _plain(detail: Any) -> Any:
    if isinstance(detail, dict):
        return field_messages(detail)
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)


def _field_key(key: Any) -> str:
    return api_settings.NON_FIELD_ERRORS_KEY if key == NON_FIELD_ERRORS else str(key)


def invalid_fields_detail(errors: dict[str, Any]) -> str:
    return "Not valid: " + ", ".join(errors) + " (see errors)" if errors else "The request is not valid"


def protected_detail(exc: ProtectedError | RestrictedError) -> str:
    blockers = sorted({str(obj) for obj in (exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects)})
    return "Still in use by " + ", ".join(blockers[:10]) + ("…" if len(blockers) > 10 else "") + "; change or delete those first"


# --- parsing --------------------------------------------------------------------------------------


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, refusing what would otherwise end in a 500: a body nested thousands
    deep (checked on the raw bytes first, as on proxied routes: ``json.loads`` would exhaust the
    recursion limit), and text no database column can hold (NUL, lone UTF-16 surrogates)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        limit = security_settings.max_json_depth
        if json_nesting_depth(body, stop_above=limit) > limit:
            raise exceptions.ParseError(f"The JSON body is nested deeper than {limit} levels")
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        if holds_unstorable_text(data):
            raise exceptions.ParseError(UNSTORABLE_TEXT)
        return data


def is_storable_text(text: str) -> bool:
    """False for text PostgreSQL refuses (NUL) or that is not UTF-8 at all (a lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def holds_unstorable_text(value: Any) -> bool:
    """Whether any string (or key) in parsed JSON is not storable; the depth is already bounded."""
    if isinstance(value, str):
        return not is_storable_text(value)
    if isinstance(value, list):
        return any(holds_unstorable_text(item) for item in value)
    if isinstance(value, dict):
        return any(holds_unstorable_text(key) or holds_unstorable_text(item) for key, item in value.items())
    return False


# --- authentication -------------------------------------------------------------------------------


class GatewayJWTAuthentication(BaseAuthentication):
    """``Authorization: Bearer <JWT>``: the gateway's own token, or a trusted external issuer's.

    An ended session, a deactivated user or a bad signature is refused with 401 here exactly as
    on a proxied route (``authn.stages.principal_of_jwt``). ``request.user`` is the Django user
    (none for an external identity, which is therefore never staff).
    """

    def authenticate(self, request: Request) -> tuple[Any, Principal] | None:
        presented = presented_credential(request._request)
        if presented is None:
            return None
        token, as_bearer = presented
        if not as_bearer or token.startswith(KEY_MARKER):
            return None  # an API key: ApiKeyAuthentication's
        if not looks_like_jwt(token):
            raise AuthenticationFailed(MALFORMED_BEARER)
        principal = principal_of_jwt(token)
        return user_of(principal.user_id), principal

    def authenticate_header(self, request: Request) -> str:
        return challenge()


class ApiKeyAuthentication(BaseAuthentication):
    """An API key as ``Authorization: Bearer mgw_…`` or ``X-API-Key: mgw_…``.

    The key is the principal (its grants decide); ``request.user`` is its owner, whose staff
    flag decides whether an ``api:write`` key may change anything.
    """

    def authenticate(self, request: Request) -> tuple[Any, Principal] | None:
        presented = presented_credential(request._request)
        if presented is None:
            return None
        token, as_bearer = presented
        if looks_like_api_key(token):
            principal = principal_of_api_key(token)
            return owner_of_key(int(principal.api_key_id)), principal
        if as_bearer and not token.startswith(KEY_MARKER):
            return None  # a JWT: GatewayJWTAuthentication's
        raise AuthenticationFailed(MALFORMED_KEY)

    def authenticate_header(self, request: Request) -> str:
        return challenge()


def user_of(user_id: int | None) -> Any:
    """The active Django user with this id, or an anonymous one (external identities)."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() if user_id is not None else None
    return user or AnonymousUser()


def owner_of_key(key_id: int) -> Any:
    key = ApiKey.objects.select_related("owner").filter(pk=key_id).first()
    return key.owner if key is not None and key.owner is not None else AnonymousUser()


# --- permission and throttling --------------------------------------------------------------------


def principal_of(request: Request) -> Principal | None:
    """The gateway principal of a JWT or API-key request; None for a session (or nobody)."""
    return request.auth if isinstance(request.auth, Principal) else None


def is_active_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


class IsStaffOrGrantedKey(BasePermission):
    """Reads: a staff user, or an API key holding ``api:read``. Writes: a staff user, or an API
    key holding ``api:write`` whose owner is staff (a key can do no more than its owner)."""

    message = NOT_STAFF

    def has_permission(self, request: Request, view: APIView) -> bool:
        principal = principal_of(request)
        writing = request.method not in SAFE_METHODS
        if principal is not None and principal.api_key_id:
            refusal = key_refusal(principal, request.user, writing)
            if refusal is not None:
                self.message = refusal
            return refusal is None
        return is_active_staff(request.user)


def key_refusal(principal: Principal, owner: Any, writing: bool) -> str | None:
    """Why this API key may not make this request, or None."""
    if not writing:
        return None if principal.may(API_READ) else KEY_CANNOT_READ
    if not principal.may(API_WRITE):
        return KEY_CANNOT_WRITE
    return None if is_active_staff(owner) else KEY_OWNER_NOT_STAFF


class PrincipalRateThrottle(SimpleRateThrottle):
    """``GATEWAY_API_RATE_LIMIT`` requests per principal: a user (JWT or session alike), an API
    key, or else the client IP. The counters live in Django's cache under the state prefix."""

    scope = "api"

    def get_rate(self) -> str:
        # Read per request, not once at import as DRF does, so a changed setting applies.
        return str(settings.GATEWAY_API_RATE_LIMIT)

    def get_cache_key(self, request: Request, view: APIView) -> str:
        principal = principal_of(request)
        if principal is not None:
            ident = principal.id
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"{settings.GATEWAY_STATE_PREFIX}throttle:{self.scope}:{ident}"


class GatewayPagination(LimitOffsetPagination):
    """``?limit=`` (default 50, at most 500) and ``?offset=``; answers carry ``count``,
    ``next``, ``previous`` and ``results``."""

    default_limit = 50
    max_limit = 500
