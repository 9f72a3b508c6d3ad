"""Roles, gateway sessions and external identity providers.

Roles are the gateway's own model rather than Django's groups and permissions: a Django
permission is a (content type, codename) row per model action, which cannot express
``tool:billing:refund_*`` or grants over tools that exist only in an upstream's answer. A role
is a named list of grant strings (``authn/permissions.py``) held by users.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from authn.permissions import pattern_problem

GRANTS_HELP = (
    'A JSON list of grants, e.g. ["route:demo", "tool:demo:*", "prompt:demo:greet", "resource:demo:demo://*"]; '
    '"*" is everything.'
)


def grant_list_problem(value: object) -> str | None:
    """Why ``value`` is not a list of grants, or None (shared by every model holding grants)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return "Give a JSON list of strings, " + GRANTS_HELP[GRANTS_HELP.index("e.g.") :]
    for grant in value:
        problem = pattern_problem(grant)
        if problem is not None:
            return f"Bad grant: {problem}."
    return None


class Role(models.Model):
    """A named set of grants; a user holds the union of their roles' grants."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    permissions = models.JSONField(default=list, blank=True, help_text=GRANTS_HELP)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="gateway_roles")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problem = grant_list_problem(self.permissions)
        if problem is not None:
            raise ValidationError({"permissions": problem})


class GatewaySession(models.Model):
    """A login: the tokens issued for it live only as long as it does.

    The live copy (and its sliding expiry) is in the state store, so every process sees an
    ended session at once; this row mirrors it for the admin, written by the worker's flush
    rather than on every request (``authn/sessions.py``).
    """

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gateway_sessions")
    created_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-last_activity_at"]
        indexes = [models.Index(fields=["ended_at", "expires_at"])]

    def __str__(self) -> str:
        return f"session {self.id[:8]}… of {self.user}"


ACCEPTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
ALGORITHMS_MESSAGE = (
    f"Give a list drawn from {', '.join(sorted(ACCEPTED_ALGORITHMS))} (no HS*: a secret shared with the provider "
    "would let anyone holding it mint tokens)."
)


def is_algorithm_list(value: object) -> bool:
    """Whether ``value`` is a JSON list of accepted algorithm names. The type is checked before
    membership: a JSON field may hold objects or lists, which a set lookup cannot hash."""
    return isinstance(value, list) and all(isinstance(name, str) and name in ACCEPTED_ALGORITHMS for name in value)


class IdentityProvider(models.Model):
    """An external OAuth 2.1 / OIDC issuer whose access tokens the gateway accepts."""

    name = models.SlugField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    issuer = models.URLField(max_length=500, unique=True, help_text="Exactly the tokens' iss claim.")
    jwks_url = models.URLField(
        "JWKS URL",
        max_length=500,
        blank=True,
        help_text="Empty: discovered from the issuer's /.well-known/openid-configuration.",
    )
    audience = models.CharField(
        max_length=500,
        blank=True,
        help_text="The aud a token must carry; empty: the gateway's own resource URL (RFC 8707).",
    )
    algorithms = models.JSONField(default=list, blank=True, help_text='Accepted; empty: ["RS256", "ES256"].')
    subject_claim = models.CharField(max_length=100, default="sub")
    roles_claim = models.CharField(
        max_length=200,
        blank=True,
        default="roles",
        help_text="Dotted path to a list of role names, e.g. realm_access.roles (Keycloak) or roles (Entra ID).",
    )
    role_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='External role -> gateway role name(s), e.g. {"mcp-admins": ["admin"]}; unmapped roles keep '
        "their own name.",
    )
    permissions_claim = models.CharField(
        max_length=200, blank=True, help_text="Dotted path to a list (or space-separated string) of grants; empty: none."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not is_algorithm_list(self.algorithms):
            errors["algorithms"] = ALGORITHMS_MESSAGE
        if not isinstance(self.role_map, dict) or not all(
            isinstance(v, (str, list)) for v in self.role_map.values()
        ):
            errors["role_map"] = 'Give an object of external role -> gateway role name or list of names.'
        if errors:
            raise ValidationError(errors)
