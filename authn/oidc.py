"""External identity providers: the gateway as an OAuth 2.1 resource server.

Besides its own HS256 tokens, the gateway accepts access tokens that a configured issuer
(Keycloak, Entra ID, Auth0, any OIDC provider) signed with an asymmetric key. The
authenticate stage reads a JWT's unverified ``iss`` only to choose the verifier; this module
then verifies everything against that provider alone:

    signature   with the provider's published key (``authn/jwks.py``), by an algorithm from the
                provider's list; never ``none`` and never HS*: with HMAC the "secret" would be
                a public key anyone can download (RS/HS key confusion)
    exp, nbf    exp required, both within a small clock-skew leeway
    iss         exactly the provider's issuer
    aud         must include the provider's audience, by default this gateway's own public URL
                (RFC 8707): a token minted for another API is not a token for this one

The caller becomes ``oidc:<provider>:<subject>``, with the gateway roles its role claim maps to
and the grants of those roles (from the user directory) plus any grants the token carries.

The enabled providers live in an in-process ``ConfigCache`` (rebuilt when ``authn/signals.py``
bumps the config version on any provider change), so a warm request makes no database query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings

from authn import jwks
from authn.directory import grants_of_roles
from authn.errors import AuthenticationFailed
from authn.models import IdentityProvider
from authn.permissions import Grants, pattern_problem
from authn.principal import Principal
from authn.tokens import BAD_SIGNATURE, EXPIRED, MALFORMED, MISSING_CLAIM, NOT_YET_VALID, refusal_for
from routing.config_version import ConfigCache

DEFAULT_ALGORITHMS = ("RS256", "ES256")
# Only signatures that need the provider's private key. HS* is absent on purpose even if a row
# lists it (the admin form refuses it, the ORM would not): a shared secret lets its holder mint
# tokens for anyone, and "none" is no signature at all.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Clocks of the provider and of the gateway drift apart by a few seconds, and a token issued
# "now" must not be refused as not yet valid. 30 s covers ordinary NTP-synchronised skew while
# keeping an expired (perhaps leaked) token usable for at most half a minute more.
CLOCK_SKEW_LEEWAY_SECONDS = 30

# Also sent as the challenge's error_description, so none may contain '"' or '\'. The messages
# shared with the gateway's own tokens (expired, bad signature, ...) come from authn.tokens.
UNTRUSTED_ISSUER = "The token issuer is not trusted by this gateway"
WRONG_ISSUER = "The token issuer is not its identity provider"
ALGORITHM_NOT_ACCEPTED = "The token's signing algorithm is not accepted for its identity provider"
UNKNOWN_SIGNING_KEY = "The token's signing key is unknown"
KEYS_UNAVAILABLE = "The identity provider's keys could not be fetched"
WRONG_AUDIENCE = "The token's audience is not this gateway"
NO_SUBJECT = "The token names no subject"
BAD_ROLES_CLAIM = "The token's roles claim is not a list of names"
BAD_PERMISSIONS_CLAIM = "The token's permissions claim is not a list of grants"
INVALID_CLAIMS = "The token's claims are not valid"

_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, EXPIRED),
    (jwt.ImmatureSignatureError, NOT_YET_VALID),
    (jwt.InvalidAudienceError, WRONG_AUDIENCE),
    (jwt.InvalidIssuerError, WRONG_ISSUER),
    (jwt.InvalidSignatureError, BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, ALGORITHM_NOT_ACCEPTED),
    (jwt.DecodeError, MALFORMED),
)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """An enabled identity provider as the hot path reads it."""

    name: str
    issuer: str
    audience: str  # empty: the gateway's public URL, read at verification (settings may change)
    subject_claim: str
    roles_claim: str
    role_map: Mapping[str, tuple[str, ...]]
    permissions_claim: str
    key_source: jwks.KeySource

    @property
    def algorithms(self) -> tuple[str, ...]:
        return self.key_source.algorithms

    def expected_audience(self) -> str:
        return self.audience or settings.GATEWAY_PUBLIC_URL


def build_providers() -> dict[str, ProviderConfig]:
    """Every enabled provider by issuer (one query)."""
    return {provider.issuer: provider_config(provider) for provider in IdentityProvider.objects.filter(enabled=True)}


def provider_config(provider: IdentityProvider) -> ProviderConfig:
    listed = provider.algorithms if isinstance(provider.algorithms, list) and provider.algorithms else DEFAULT_ALGORITHMS
    algorithms = tuple(algorithm for algorithm in listed if algorithm in ASYMMETRIC_ALGORITHMS)
    raw_map = provider.role_map if isinstance(provider.role_map, dict) else {}
    role_map = {external: _role_names(mapped) for external, mapped in raw_map.items()}
    return ProviderConfig(
        name=provider.name,
        issuer=provider.issuer,
        audience=provider.audience,
        subject_claim=provider.subject_claim or "sub",
        roles_claim=provider.roles_claim,
        role_map=role_map,
        permissions_claim=provider.permissions_claim,
        key_source=jwks.KeySource(provider.name, provider.issuer, provider.jwks_url, algorithms),
    )


def _role_names(mapped: object) -> tuple[str, ...]:
    if isinstance(mapped, str):
        return (mapped,)
    if isinstance(mapped, list):
        return tuple(name for name in mapped if isinstance(name, str))
    return ()


_providers: ConfigCache[dict[str, ProviderConfig]] = ConfigCache(build_providers)


def trusted_issuers() -> tuple[str, ...]:
    """The issuers of the enabled providers, in the providers' (name) order."""
    return tuple(_providers.get())


def is_external_issuer(issuer: str) -> bool:
    return issuer in _providers.get()


def authorization_servers() -> list[str]:
    """The issuers an MCP client may get a token from, for RFC 9728's ``authorization_servers``.

    Only the external providers: RFC 9728 lists RFC 8414 authorization servers, and the
    gateway's own token endpoint (username and password) publishes no such metadata.
    """
    return list(trusted_issuers())


def authenticate_external(token: str, issuer: str) -> Principal:
    """The principal of an external provider's access token; AuthenticationFailed otherwise."""
    provider = _providers.get().get(issuer)
    if provider is None:
        raise AuthenticationFailed(UNTRUSTED_ISSUER)
    claims = verified_claims(token, provider)
    subject = subject_of(claims, provider)
    roles = gateway_roles(names_in_claim(claims, provider.roles_claim, BAD_ROLES_CLAIM), provider.role_map)
    claimed_grants = names_in_claim(claims, provider.permissions_claim, BAD_PERMISSIONS_CLAIM)
    # Keep only what reads as a gateway grant: a scope claim also carries "openid", "profile"...
    grants = [*grants_of_roles(roles).names(), *(g for g in claimed_grants if pattern_problem(g) is None)]
    return Principal(f"oidc:{provider.name}:{subject}", roles=roles, grants=Grants.of(grants))


def verified_claims(token: str, provider: ProviderConfig) -> dict[str, Any]:
    """The token's claims once signature, algorithm, time, issuer and audience all check out."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise AuthenticationFailed(MALFORMED) from None
    algorithm, kid = header.get("alg"), header.get("kid")
    # Checked before any key is touched, so "none" and HS* never reach a verifier.
    if not isinstance(algorithm, str) or algorithm not in provider.algorithms:
        raise AuthenticationFailed(ALGORITHM_NOT_ACCEPTED)
    if kid is not None and not isinstance(kid, str):
        raise AuthenticationFailed(MALFORMED)
    key = signing_key(provider, kid, algorithm)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=provider.expected_audience(),
            issuer=provider.issuer,
            leeway=CLOCK_SKEW_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(MISSING_CLAIM.format(claim=exc.claim)) from None
    except jwt.PyJWTError as exc:  # every other refusal, and anything PyJWT finds wrong with the key
        raise AuthenticationFailed(refusal_for(exc, _REFUSALS, INVALID_CLAIMS)) from None
    return claims


def signing_key(provider: ProviderConfig, kid: str | None, algorithm: str) -> jwt.PyJWK:
    try:
        return jwks.signing_keys.signing_key(provider.key_source, kid, algorithm)
    except jwks.UnknownSigningKey:
        raise AuthenticationFailed(UNKNOWN_SIGNING_KEY) from None
    except jwks.SigningKeysUnavailable:
        raise AuthenticationFailed(KEYS_UNAVAILABLE) from None


def subject_of(claims: Mapping[str, Any], provider: ProviderConfig) -> str:
    subject = claim_at(claims, provider.subject_claim)
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed(NO_SUBJECT)
    return subject


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (``realm_access.roles``), or None.

    A claim whose own name has dots (Auth0's namespaced ``https://example.com/roles``) is
    found whole before the path is split.
    """
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def names_in_claim(claims: Mapping[str, Any], path: str, malformed: str) -> tuple[str, ...]:
    """The names a claim holds as a list of strings or one space-separated string (OAuth's
    ``scope``); none when the path is empty or the claim absent, ``malformed`` refused otherwise."""
    if not path:
        return ()
    value = claim_at(claims, path)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return tuple(value)
    raise AuthenticationFailed(malformed)


def gateway_roles(external_roles: Iterable[str], role_map: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """The gateway role names of the provider's roles: mapped ones replaced, others kept as named."""
    roles: set[str] = set()
    for external in external_roles:
        roles.update(role_map.get(external, (external,)))
    return frozenset(roles)
