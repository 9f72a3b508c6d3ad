"""External identity providers' tokens (authn/oidc.py, authn/jwks.py), verified against a real
provider endpoint (tests/authn/jwks_server.py): who a token makes the caller, every refusal with
its exact detail, key rotation and the bounds on refetching, discovery, an unreachable
provider, and no query or fetch once warm. Time for the key cache moves on a fake clock."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.test import override_settings

from authn import jwks
from authn.directory import grants_of_roles
from authn.errors import WWW_AUTHENTICATE_HEADER, AuthenticationFailed, challenge
from authn.jwks import usable_keys
from authn.models import IdentityProvider, Role
from authn.oidc import (
    ALGORITHM_NOT_ACCEPTED,
    BAD_ROLES_CLAIM,
    BAD_SIGNATURE,
    EXPIRED,
    KEYS_UNAVAILABLE,
    MALFORMED,
    MISSING_CLAIM,
    NO_SUBJECT,
    NOT_YET_VALID,
    UNKNOWN_SIGNING_KEY,
    UNTRUSTED_ISSUER,
    WRONG_AUDIENCE,
    WRONG_ISSUER,
    authenticate_external,
    authorization_servers,
    is_external_issuer,
    trusted_issuers,
)
from authn.principal import Principal
from tests.authn.jwks_server import (
    DISCOVERY_PATH,
    JWKS_PATH,
    JwksServer,
    SigningKey,
    claims_for,
    ec_key,
    hs256_token,
    rsa_key,
    unsigned_token,
    with_payload,
)
from tests.gateway_project.conftest import FakeClock
from tests.live_servers import free_port


@pytest.fixture(autouse=True)
def key_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The key cache starts empty and runs on a clock that moves only when the test says."""
    clock = FakeClock()
    jwks.signing_keys.clear()
    monkeypatch.setattr(jwks.signing_keys, "clock", clock)
    yield clock
    jwks.signing_keys.clear()


@pytest.fixture
def rsa_signing_key() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture
def ec_signing_key() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture
def idp(rsa_signing_key: SigningKey, ec_signing_key: SigningKey) -> Iterator[JwksServer]:
    """The provider's endpoints, publishing one RSA and one EC key."""
    server = JwksServer([rsa_signing_key, ec_signing_key]).start()
    yield server
    server.stop()


@pytest.fixture
def provider(db: Any, idp: JwksServer) -> IdentityProvider:
    """A Keycloak-shaped provider: realm roles mapped to gateway roles, grants in ``scope``."""
    return IdentityProvider.objects.create(
        name="keycloak",
        issuer=idp.issuer,
        jwks_url=idp.jwks_url,
        roles_claim="realm_access.roles",
        role_map={"mcp-users": "mcp-user", "mcp-admins": ["mcp-user", "operator"]},
        permissions_claim="scope",
    )


def claims(idp: JwksServer, **extra: Any) -> dict[str, Any]:
    """Valid claims for the gateway's default audience (its public URL)."""
    return claims_for(idp.issuer, settings.GATEWAY_PUBLIC_URL, **extra)


def assert_refused(token: str, issuer: str, detail: str) -> None:
    """The whole contract of a refusal: 401, the detail, and a challenge that can carry it."""
    with pytest.raises(AuthenticationFailed) as refused:
        authenticate_external(token, issuer)
    assert refused.value.detail == detail
    assert refused.value.status == 401
    assert refused.value.headers == {WWW_AUTHENTICATE_HEADER: challenge(detail)}
    assert '"' not in detail and "\\" not in detail


# --- accepted tokens ---------------------------------------------------------------------------


def test_rs256_token_becomes_principal_with_mapped_roles_and_their_grants(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    Role.objects.create(name="mcp-user", permissions=["tool:demo:*"])
    Role.objects.create(name="operator", permissions=["route:admin-api"])
    token = rsa_signing_key.sign(
        claims(idp, realm_access={"roles": ["mcp-admins", "offline_access"]}, scope="openid profile prompt:demo:greet")
    )

    principal = authenticate_external(token, idp.issuer)

    assert principal.id == "oidc:keycloak:alice"
    assert principal.roles == frozenset({"mcp-user", "operator", "offline_access"})  # unmapped keep their name
    # The roles' grants and the token's own grants; "openid" and "profile" are not grants.
    assert principal.grants.names() == ("prompt:demo:greet", "route:admin-api", "tool:demo:*")
    assert principal.may("tool:demo:add") and not principal.may("tool:billing:refund")
    assert (principal.user_id, principal.session_id, principal.api_key_id) == (None, "", "")


def test_es256_token_is_accepted(provider: IdentityProvider, idp: JwksServer, ec_signing_key: SigningKey) -> None:
    Role.objects.create(name="mcp-user", permissions=["route:demo"])
    token = ec_signing_key.sign(claims(idp, subject="bob", realm_access={"roles": ["mcp-users"]}))

    principal = authenticate_external(token, idp.issuer)

    assert principal == Principal("oidc:keycloak:bob", roles=frozenset({"mcp-user"}), grants=grants_of_roles(["mcp-user"]))
    assert principal.may("route:demo")


def test_ps256_token_is_accepted_with_the_same_rsa_key_when_the_provider_allows_it(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    provider.algorithms = ["PS256"]
    provider.save()
    token = rsa_signing_key.sign(claims(idp), algorithm="PS256")
    assert authenticate_external(token, idp.issuer).id == "oidc:keycloak:alice"
    assert_refused(rsa_signing_key.sign(claims(idp)), idp.issuer, ALGORITHM_NOT_ACCEPTED)


def test_an_audience_list_that_includes_the_gateway_is_accepted(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    token = rsa_signing_key.sign(claims_for(idp.issuer, ["account", settings.GATEWAY_PUBLIC_URL]))
    assert authenticate_external(token, idp.issuer).id == "oidc:keycloak:alice"


def test_a_configured_audience_replaces_the_gateway_url(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    provider.audience = "api://mcp-gateway"
    provider.save()
    assert authenticate_external(rsa_signing_key.sign(claims_for(idp.issuer, "api://mcp-gateway")), idp.issuer)
    assert_refused(rsa_signing_key.sign(claims(idp)), idp.issuer, WRONG_AUDIENCE)


def test_a_token_expired_within_the_clock_skew_leeway_is_accepted(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    now = int(time.time())
    token = rsa_signing_key.sign(claims(idp, iat=now - 300, exp=now - 10, nbf=now + 10))
    assert authenticate_external(token, idp.issuer).id == "oidc:keycloak:alice"


def test_namespaced_claims_and_another_subject_claim_are_read(db: Any, idp: JwksServer, rsa_signing_key: SigningKey) -> None:
    """Auth0 puts roles under a URL (dots and all) and Entra ID names the user by ``oid``."""
    IdentityProvider.objects.create(
        name="auth0",
        issuer=idp.issuer,
        jwks_url=idp.jwks_url,
        subject_claim="oid",
        roles_claim="https://mcp.example.com/roles",
        permissions_claim="permissions",
    )
    token = rsa_signing_key.sign(
        claims(idp, oid="0f8e", permissions=["tool:demo:add"], **{"https://mcp.example.com/roles": ["viewer"]})
    )

    principal = authenticate_external(token, idp.issuer)

    assert (principal.id, principal.roles, principal.grants.names()) == ("oidc:auth0:0f8e", frozenset({"viewer"}), ("tool:demo:add",))


# --- refused tokens ----------------------------------------------------------------------------

TokenMaker = Callable[[JwksServer, SigningKey], str]


def _claims_without(idp: JwksServer, name: str) -> dict[str, Any]:
    return {claim: value for claim, value in claims(idp).items() if claim != name}


REFUSALS: list[Any] = [
    pytest.param(lambda idp, key: key.sign(claims(idp, aud="https://other.example/api")), WRONG_AUDIENCE, id="wrong-audience"),
    pytest.param(lambda idp, key: key.sign(_claims_without(idp, "aud")), MISSING_CLAIM.format(claim="aud"), id="no-audience"),
    pytest.param(lambda idp, key: key.sign(claims(idp, iss="https://evil.example")), WRONG_ISSUER, id="wrong-issuer"),
    pytest.param(lambda idp, key: key.sign(claims(idp, exp=int(time.time()) - 60)), EXPIRED, id="expired"),
    pytest.param(lambda idp, key: key.sign(_claims_without(idp, "exp")), MISSING_CLAIM.format(claim="exp"), id="no-expiry"),
    pytest.param(lambda idp, key: key.sign(claims(idp, nbf=int(time.time()) + 60)), NOT_YET_VALID, id="not-yet-valid"),
    pytest.param(
        lambda idp, key: with_payload(key.sign(claims(idp)), claims(idp, subject="admin")), BAD_SIGNATURE, id="tampered-payload"
    ),
    pytest.param(lambda idp, key: rsa_key(key.kid).sign(claims(idp)), BAD_SIGNATURE, id="forged-signature-same-kid"),
    pytest.param(lambda idp, key: unsigned_token(claims(idp), key.kid), ALGORITHM_NOT_ACCEPTED, id="alg-none"),
    pytest.param(
        lambda idp, key: hs256_token(claims(idp), key.public_pem(), key.kid), ALGORITHM_NOT_ACCEPTED, id="hs256-key-confusion"
    ),
    pytest.param(lambda idp, key: "eyJhbGciOi.not-base64!.x", MALFORMED, id="not-a-jwt"),
    pytest.param(lambda idp, key: key.sign(_claims_without(idp, "sub")), NO_SUBJECT, id="no-subject"),
    pytest.param(lambda idp, key: key.sign(claims(idp, realm_access={"roles": [1, 2]})), BAD_ROLES_CLAIM, id="bad-roles"),
]


@pytest.mark.parametrize(("make_token", "detail"), REFUSALS)
def test_refused_token_gets_401_with_a_clear_detail(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, make_token: TokenMaker, detail: str
) -> None:
    assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)  # the same key does work
    assert_refused(make_token(idp, rsa_signing_key), idp.issuer, detail)


def test_rs256_token_is_refused_when_the_provider_only_allows_es256(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, ec_signing_key: SigningKey
) -> None:
    provider.algorithms = ["ES256"]
    provider.save()
    assert_refused(rsa_signing_key.sign(claims(idp)), idp.issuer, ALGORITHM_NOT_ACCEPTED)
    assert authenticate_external(ec_signing_key.sign(claims(idp)), idp.issuer).id == "oidc:keycloak:alice"


def test_hs256_is_refused_even_when_a_row_lists_it(provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey) -> None:
    provider.algorithms = ["HS256", "RS256"]  # the admin form refuses this; the ORM does not
    provider.save()
    token = hs256_token(claims(idp), rsa_signing_key.public_pem(), rsa_signing_key.kid)
    assert_refused(token, idp.issuer, ALGORITHM_NOT_ACCEPTED)


def test_token_of_an_unknown_issuer_is_refused(provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey) -> None:
    token = rsa_signing_key.sign(claims_for("https://elsewhere.example", settings.GATEWAY_PUBLIC_URL))
    assert not is_external_issuer("https://elsewhere.example")
    assert_refused(token, "https://elsewhere.example", UNTRUSTED_ISSUER)


def test_a_disabled_providers_tokens_are_refused(provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey) -> None:
    token = rsa_signing_key.sign(claims(idp))
    assert authenticate_external(token, idp.issuer).id == "oidc:keycloak:alice"

    provider.enabled = False
    provider.save()  # bumps the config version: the provider cache is rebuilt at once

    assert not is_external_issuer(idp.issuer) and trusted_issuers() == ()
    assert_refused(token, idp.issuer, UNTRUSTED_ISSUER)


def test_trusted_issuers_and_authorization_servers_list_the_enabled_providers(db: Any) -> None:
    IdentityProvider.objects.create(name="okta", issuer="https://okta.example/oauth2/default")
    IdentityProvider.objects.create(name="entra", issuer="https://login.example/tenant/v2.0")
    IdentityProvider.objects.create(name="old", issuer="https://old.example", enabled=False)

    assert trusted_issuers() == ("https://login.example/tenant/v2.0", "https://okta.example/oauth2/default")
    assert authorization_servers() == ["https://login.example/tenant/v2.0", "https://okta.example/oauth2/default"]
    assert is_external_issuer("https://okta.example/oauth2/default") and not is_external_issuer("https://old.example")


# --- keys: rotation, refetch bounds, discovery, failures ----------------------------------------

COOLDOWN = settings.GATEWAY_JWKS_REFRESH_COOLDOWN_SECONDS


def test_a_new_kid_after_rotation_makes_exactly_one_refetch(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock
) -> None:
    assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)
    assert idp.fetches() == 1
    rotated = rsa_key("rsa-2")
    idp.publish([rsa_signing_key, rotated])
    key_clock.advance(COOLDOWN + 1)

    assert authenticate_external(rotated.sign(claims(idp)), idp.issuer).id == "oidc:keycloak:alice"
    assert authenticate_external(rotated.sign(claims(idp)), idp.issuer)
    assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)
    assert idp.fetches() == 2


def test_a_new_kid_within_the_cooldown_is_refused_without_a_fetch(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock
) -> None:
    assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)
    rotated = rsa_key("rsa-2")
    idp.publish([rotated])
    key_clock.advance(COOLDOWN - 1)

    assert_refused(rotated.sign(claims(idp)), idp.issuer, UNKNOWN_SIGNING_KEY)
    assert idp.fetches() == 1

    key_clock.advance(1)
    assert authenticate_external(rotated.sign(claims(idp)), idp.issuer)
    assert idp.fetches() == 2


def test_a_burst_of_forged_kids_makes_at_most_one_fetch(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock
) -> None:
    assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)  # warm, in this thread
    key_clock.advance(COOLDOWN + 1)
    forged = [rsa_signing_key.sign(claims(idp), kid=f"forged-{uuid.uuid4().hex}") for _ in range(40)]

    def refusal(token: str) -> str:
        try:
            authenticate_external(token, idp.issuer)
        except AuthenticationFailed as exc:
            return exc.detail
        return "accepted"

    with ThreadPoolExecutor(max_workers=8) as pool:
        details = list(pool.map(refusal, forged))

    assert details == [UNKNOWN_SIGNING_KEY] * 40
    assert idp.fetches() == 2
    key_clock.advance(COOLDOWN)
    assert_refused(forged[0], idp.issuer, UNKNOWN_SIGNING_KEY)
    assert idp.fetches() == 3  # the bound is per cooldown, not forever


def test_concurrent_first_tokens_share_one_fetch(provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey) -> None:
    trusted_issuers(), grants_of_roles(())  # database caches warm in this thread; keys stay cold
    tokens = [rsa_signing_key.sign(claims(idp, subject=f"user{n}")) for n in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda token: authenticate_external(token, idp.issuer).id, tokens))

    assert ids == [f"oidc:keycloak:user{n}" for n in range(16)]
    assert idp.fetches() == 1


def test_the_key_set_is_fetched_again_after_its_cache_lifetime(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock
) -> None:
    with override_settings(GATEWAY_JWKS_CACHE_SECONDS=600):
        assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)
        key_clock.advance(599)
        assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)
        assert idp.fetches() == 1
        key_clock.advance(1)
        assert authenticate_external(rsa_signing_key.sign(claims(idp)), idp.issuer)
        assert idp.fetches() == 2


def test_keys_are_discovered_through_openid_configuration_when_no_jwks_url_is_set(
    provider: IdentityProvider, idp: JwksServer, ec_signing_key: SigningKey
) -> None:
    provider.jwks_url = ""
    provider.save()

    assert authenticate_external(ec_signing_key.sign(claims(idp)), idp.issuer).id == "oidc:keycloak:alice"
    assert (idp.fetches(DISCOVERY_PATH), idp.fetches(JWKS_PATH)) == (1, 1)


def test_a_discovery_document_naming_another_issuer_is_not_trusted(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    provider.jwks_url = ""
    provider.save()
    idp.discovered_issuer = "https://evil.example"

    assert_refused(rsa_signing_key.sign(claims(idp)), idp.issuer, KEYS_UNAVAILABLE)
    assert (idp.fetches(DISCOVERY_PATH), idp.fetches(JWKS_PATH)) == (1, 0)


def test_an_unreachable_keys_endpoint_gets_a_clear_refusal(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey
) -> None:
    provider.jwks_url = f"http://127.0.0.1:{free_port()}/keys"  # nothing listens there
    provider.save()
    assert_refused(rsa_signing_key.sign(claims(idp)), idp.issuer, KEYS_UNAVAILABLE)


@pytest.mark.parametrize(
    "answer",
    [
        (500, b'{"error": "down"}'),
        (302, b""),  # redirects are not followed
        (200, b"<html>maintenance</html>"),
        (200, b'["not", "an", "object"]'),
        (200, b'{"no": "keys"}'),
    ],
    ids=["500", "redirect", "not-json", "not-an-object", "no-keys-list"],
)
def test_a_failing_keys_endpoint_is_asked_again_only_after_the_cooldown(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock, answer: tuple[int, bytes]
) -> None:
    idp.forced_answer = answer
    token = rsa_signing_key.sign(claims(idp))

    assert_refused(token, idp.issuer, KEYS_UNAVAILABLE)
    assert_refused(token, idp.issuer, KEYS_UNAVAILABLE)
    assert idp.fetches() == 1

    idp.forced_answer = None
    key_clock.advance(COOLDOWN)
    assert authenticate_external(token, idp.issuer).id == "oidc:keycloak:alice"
    assert idp.fetches() == 2


def test_keys_past_their_lifetime_are_not_used_when_the_refetch_fails(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock
) -> None:
    token = rsa_signing_key.sign(claims(idp))
    assert authenticate_external(token, idp.issuer)
    idp.forced_answer = (503, b"{}")
    key_clock.advance(settings.GATEWAY_JWKS_CACHE_SECONDS)
    assert_refused(token, idp.issuer, KEYS_UNAVAILABLE)


def test_an_oversized_keys_answer_is_refused_and_the_reason_logged(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    padding = b"x" * jwks.MAX_DOCUMENT_BYTES
    idp.forced_answer = (200, b'{"keys": [], "padding": "' + padding + b'"}')  # valid JSON, only too big

    with caplog.at_level(logging.WARNING, logger="authn.jwks"):
        assert_refused(rsa_signing_key.sign(claims(idp)), idp.issuer, KEYS_UNAVAILABLE)

    assert f"answered more than {jwks.MAX_DOCUMENT_BYTES} bytes" in caplog.text and "keycloak" in caplog.text


def test_a_token_without_kid_needs_a_single_key_for_its_algorithm(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, key_clock: FakeClock
) -> None:
    token = jwt.encode(claims(idp), rsa_signing_key.private_key, algorithm="RS256")  # no kid header
    assert authenticate_external(token, idp.issuer).id == "oidc:keycloak:alice"

    idp.publish([rsa_signing_key, rsa_key("rsa-2")])
    key_clock.advance(settings.GATEWAY_JWKS_CACHE_SECONDS)
    assert_refused(token, idp.issuer, UNKNOWN_SIGNING_KEY)  # which of the two? not guessed


def test_only_signing_keys_strong_enough_and_fitting_an_accepted_algorithm_are_used() -> None:
    rsa_jwk = {key: value for key, value in rsa_key("rsa").public_jwk().items() if key != "alg"}
    ec_jwk = ec_key("ec").public_jwk()
    encryption_jwk = {**rsa_key("enc").public_jwk(), "use": "enc"}
    weak_jwk = SigningKey("weak", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024)).public_jwk()
    hmac_jwk = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}
    jwks_document = {"keys": [rsa_jwk, ec_jwk, encryption_jwk, weak_jwk, hmac_jwk, "junk"]}

    keys = usable_keys(jwks_document, ("RS256", "PS256", "ES256", "ES384"))

    # The RSA key serves both RSA algorithms; the P-256 key serves ES256 but not ES384.
    assert sorted(keys) == [("ec", "ES256"), ("rsa", "PS256"), ("rsa", "RS256")]


# --- the hot path ------------------------------------------------------------------------------


def test_a_warm_known_kid_token_makes_no_query_and_no_fetch(
    provider: IdentityProvider, idp: JwksServer, rsa_signing_key: SigningKey, django_assert_num_queries: Any
) -> None:
    Role.objects.create(name="mcp-user", permissions=["tool:demo:*"])
    token = rsa_signing_key.sign(claims(idp, realm_access={"roles": ["mcp-users"]}))
    assert authenticate_external(token, idp.issuer)  # warms the provider, directory and key caches
    fetches = idp.fetches()

    with django_assert_num_queries(0):
        assert trusted_issuers() == (idp.issuer,) and is_external_issuer(idp.issuer)
        for _ in range(3):
            assert authenticate_external(token, idp.issuer).may("tool:demo:add")
        assert_refused(rsa_signing_key.sign(claims(idp, aud="https://other.example")), idp.issuer, WRONG_AUDIENCE)

    assert idp.fetches() == fetches
