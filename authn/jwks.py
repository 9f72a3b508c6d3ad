"""The signing keys of external identity providers: fetched, cached, refetched on rotation.

An identity provider publishes its public keys as a JWKS (RFC 7517), at a configured URL or at
the ``jwks_uri`` of its OpenID discovery document. Every process keeps one key set per
provider and reuses it for ``GATEWAY_JWKS_CACHE_SECONDS``; verifying a token with a known key
costs no network call and takes no lock.

A token naming an unknown ``kid`` usually means the provider rotated its keys, so the set is
fetched again at once, but at most once per ``GATEWAY_JWKS_REFRESH_COOLDOWN_SECONDS`` per
provider: anyone can send tokens with made-up kids, and each must not become a request to the
provider. The same cooldown spaces out retries after a failed fetch, so an unreachable provider
costs one timeout per cooldown rather than one per request. PyJWT's ``PyJWKClient`` refetches
on every unknown kid without such a bound, hence this small cache of its own.

    >>> source = KeySource("keycloak", "https://sso.example/realms/main", jwks_url="", algorithms=("RS256",))
    >>> key = signing_keys.signing_key(source, kid="2024-05", algorithm="RS256")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import urllib3
from django.conf import settings

from performance.pools import release

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
FETCH_TIMEOUT = urllib3.Timeout(connect=5.0, read=5.0)
# A JWKS is a few kilobytes; the bound keeps a misbehaving endpoint from filling memory.
MAX_DOCUMENT_BYTES = 1024 * 1024

# One pool for every provider (pools are keyed by origin inside it). No redirects: a key URL
# that redirects is a misconfiguration to fix, not something to follow silently.
_http = urllib3.PoolManager(timeout=FETCH_TIMEOUT, retries=False, maxsize=4)


class SigningKeyError(Exception):
    """Root of the reasons no key can be given for a token."""


class UnknownSigningKey(SigningKeyError):
    """Raised when the provider's current key set has no key for the token's kid and algorithm."""


class SigningKeysUnavailable(SigningKeyError):
    """Raised when the provider's key set could not be fetched (unreachable, bad answer)."""


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where one provider's keys come from; a change to any field starts a fresh cache entry."""

    provider_name: str
    issuer: str
    jwks_url: str  # empty: discovered from the issuer's openid-configuration
    algorithms: tuple[str, ...]  # the only algorithms keys are prepared for


@dataclass(frozen=True, slots=True)
class KeySet:
    """The usable keys of one fetch, by (kid, algorithm); a kid-less JWK is filed under None."""

    keys: Mapping[tuple[str | None, str], jwt.PyJWK]
    fetched_at: float

    def find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        if kid is not None:
            return self.keys.get((kid, algorithm))
        # A token without a kid can only mean the provider has a single key for its algorithm.
        candidates = [key for (_, key_algorithm), key in self.keys.items() if key_algorithm == algorithm]
        return candidates[0] if len(candidates) == 1 else None


class _ProviderKeys:
    """One provider's cache entry; ``key_set`` is replaced whole, so readers need no lock."""

    def __init__(self, source: KeySource) -> None:
        self.source = source
        self.key_set: KeySet | None = None
        self.last_attempt_at: float | None = None
        self.fetch_lock = threading.Lock()


class SigningKeyCache:
    """Per-provider key sets on a monotonic ``clock`` (tests replace it to move time)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._providers: dict[str, _ProviderKeys] = {}
        self._providers_lock = threading.Lock()

    def signing_key(self, source: KeySource, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key to verify a token signed with ``algorithm`` under ``kid``.

        Raises UnknownSigningKey or SigningKeysUnavailable; fetches only when the set is
        missing, older than the cache lifetime, or lacks the kid (and the cooldown allows).
        """
        entry = self._entry(source)
        key = _cached_key(entry, kid, algorithm, self.clock())
        if key is not None:
            return key
        with entry.fetch_lock:
            # Another thread may have fetched while this one waited: look again first.
            now = self.clock()
            key = _cached_key(entry, kid, algorithm, now)
            if key is not None:
                return key
            if entry.last_attempt_at is not None and now - entry.last_attempt_at < _refresh_cooldown_seconds():
                if _fresh_key_set(entry, now) is not None:
                    raise UnknownSigningKey()
                raise SigningKeysUnavailable()  # the last attempt, moments ago, failed
            entry.last_attempt_at = now
            entry.key_set = fetch_key_set(source, now)  # on failure the old set stays, aging out
            key = entry.key_set.find(kid, algorithm)
        if key is None:
            raise UnknownSigningKey()
        return key

    def clear(self) -> None:
        """Forget every provider's keys (tests; a process never needs to)."""
        with self._providers_lock:
            self._providers.clear()

    def _entry(self, source: KeySource) -> _ProviderKeys:
        entry = self._providers.get(source.provider_name)
        if entry is not None and entry.source == source:
            return entry
        with self._providers_lock:
            entry = self._providers.get(source.provider_name)
            if entry is None or entry.source != source:
                entry = _ProviderKeys(source)
                self._providers[source.provider_name] = entry
            return entry


signing_keys = SigningKeyCache()


def _fresh_key_set(entry: _ProviderKeys, now: float) -> KeySet | None:
    key_set = entry.key_set
    if key_set is None or now - key_set.fetched_at >= _cache_seconds():
        return None
    return key_set


def _cached_key(entry: _ProviderKeys, kid: str | None, algorithm: str, now: float) -> jwt.PyJWK | None:
    key_set = _fresh_key_set(entry, now)
    return key_set.find(kid, algorithm) if key_set is not None else None


def _cache_seconds() -> float:
    return float(settings.GATEWAY_JWKS_CACHE_SECONDS)


def _refresh_cooldown_seconds() -> float:
    return float(settings.GATEWAY_JWKS_REFRESH_COOLDOWN_SECONDS)


def fetch_key_set(source: KeySource, now: float) -> KeySet:
    """Fetch and parse the provider's JWKS (discovering its URL first when none is configured)."""
    try:
        url = source.jwks_url or discover_jwks_url(source.issuer)
        keys = usable_keys(get_json(url), source.algorithms)
    except SigningKeysUnavailable as exc:
        logger.warning("identity provider %s: keys not fetched: %s", source.provider_name, exc)
        raise
    if not keys:
        logger.warning("identity provider %s: the JWKS at %s has no key for %s", source.provider_name, url, source.algorithms)
    return KeySet(keys, fetched_at=now)


def discover_jwks_url(issuer: str) -> str:
    """The ``jwks_uri`` of the issuer's OpenID discovery document (OpenID Connect Discovery 1.0)."""
    document = get_json(issuer.rstrip("/") + DISCOVERY_PATH)
    # Discovery §4.3: the document must name the issuer it was fetched for, else it describes
    # someone else's keys.
    if document.get("issuer") != issuer:
        raise SigningKeysUnavailable(f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise SigningKeysUnavailable(f"the discovery document has no usable jwks_uri ({jwks_uri!r})")
    return jwks_uri


def get_json(url: str) -> dict[str, Any]:
    """A JSON object fetched with GET; any failure is SigningKeysUnavailable naming the reason."""
    try:
        response = _http.request(
            "GET", url, headers={"Accept": "application/json"}, preload_content=False, redirect=False
        )
    except urllib3.exceptions.HTTPError as exc:
        raise SigningKeysUnavailable(f"GET {url} failed: {exc}") from None
    complete = False
    try:
        if response.status != 200:
            raise SigningKeysUnavailable(f"GET {url} answered {response.status}")
        body = response.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise SigningKeysUnavailable(f"GET {url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        complete = True
        document = json.loads(body)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise SigningKeysUnavailable(f"GET {url} broke off: {exc}") from None
    except ValueError:
        raise SigningKeysUnavailable(f"GET {url} answered something that is not JSON") from None
    finally:
        release(response, complete=complete)  # a connection with an unread rest is closed
    if not isinstance(document, dict):
        raise SigningKeysUnavailable(f"GET {url} answered JSON that is not an object")
    return document


def usable_keys(jwks: Mapping[str, Any], algorithms: tuple[str, ...]) -> dict[tuple[str | None, str], jwt.PyJWK]:
    """Each signing key of the JWKS prepared for every accepted algorithm it can verify.

    A JWK that names its ``alg`` serves that algorithm only; one that does not (common for RSA)
    serves each accepted algorithm its key type fits (RS256 and PS256 for one RSA key). Keys for
    encryption, of unknown types or too weak are skipped, as RFC 7517 §5 asks of unusable members.
    """
    members = jwks.get("keys")
    if not isinstance(members, list):
        raise SigningKeysUnavailable("the JWKS has no keys list")
    keys: dict[tuple[str | None, str], jwt.PyJWK] = {}
    for member in members:
        if not isinstance(member, dict) or member.get("use", "sig") != "sig":
            continue
        kid = member.get("kid") if isinstance(member.get("kid"), str) else None
        candidates = [member["alg"]] if "alg" in member else list(algorithms)
        for algorithm in candidates:
            if algorithm in algorithms:
                key = _prepared_key(member, algorithm)
                if key is not None:
                    keys[(kid, algorithm)] = key
    return keys


def _prepared_key(member: dict[str, Any], algorithm: str) -> jwt.PyJWK | None:
    """The JWK as a key bound to ``algorithm``, or None when it cannot serve it."""
    try:
        key = jwt.PyJWK(member, algorithm=algorithm)
        # prepare_key checks what PyJWK does not, such as an EC curve matching the algorithm.
        prepared = key.Algorithm.prepare_key(key.key)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    if key.Algorithm.check_key_length(prepared) is not None:
        return None  # e.g. RSA under 2048 bits: too weak to trust a signature from
    return key
