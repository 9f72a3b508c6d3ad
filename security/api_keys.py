"""API keys: generation, hash-only storage, verification from an in-process cache, per-key rate
limits and usage counting.

A key is ``mgw_`` + 32 random bytes in base64url (43 characters). The database keeps only the
first 8 characters after ``mgw_`` (to find the row, and to show in the admin) and the key's
SHA-256. A slow password KDF (bcrypt, scrypt, Argon2) is for secrets a human chose, whose few
bits an attacker with the hash can enumerate; a 256-bit uniformly random key cannot be
enumerated at any hash rate, and needs no salt either (no two keys share an input), so SHA-256
loses nothing and costs a microsecond instead of ~100 ms on every request.

The hot path never queries the database: every key (also disabled, revoked and expired ones,
so the refusal can say why) is compiled into an in-process cache, rebuilt when the config
version moves (ApiKey save/delete bump it, see ``security/signals.py``).

    >>> key = generate_key()
    >>> key.startswith("mgw_"), len(key)
    (True, 47)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpResponse
from django.utils import timezone

from gateway_project.exchange import Exchange
from gateway_project.state import StateStore, StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from routing.config_version import ConfigCache
from security.models import ApiKey, Scope
from security.ratelimit import REMAINING_HEADER, CompiledPolicy, count_request, quota_headers, refusal
from security.ratelimit_algorithms import Decision, Limit

logger = logging.getLogger(__name__)

KEY_MARKER = "mgw_"
KEY_BYTES = 32
VISIBLE_PREFIX_LENGTH = 8
# base64url without padding: 32 bytes -> 43 characters.
API_KEY_PATTERN = re.compile(r"mgw_[A-Za-z0-9_-]{43}")
# Compared against when the prefix is unknown, so a miss costs what a hit costs.
_UNMATCHABLE_HASH = "0" * 64

# Refusal reasons, in the order they are checked (the stage maps them to messages).
REVOKED = "revoked"
DISABLED = "disabled"
OWNER_INACTIVE = "owner_inactive"
EXPIRED = "expired"

# (window name, seconds, model field): each set limit is an exact sliding window per key.
KEY_LIMIT_WINDOWS = (
    ("minute", 60.0, "per_minute_limit"),
    ("hour", 3600.0, "per_hour_limit"),
    ("day", 86400.0, "per_day_limit"),
)

USAGE_FLUSH_EVERY_SECONDS = 10.0
# Longer than any flush could take; a crashed flusher's lease frees itself after this.
USAGE_FLUSH_LEASE_SECONDS = 60.0
USAGE_FLUSH_LEASE_KEY = "apikey:usage:flush-lease"
# Only read by a flush that also moved the request counter, so it just needs to outlive a round.
LAST_USED_TTL_SECONDS = 86400.0


# --- generation and storage --------------------------------------------------------------------


def generate_key() -> str:
    """A new key: ``mgw_`` and 32 bytes from the OS's CSPRNG, base64url without padding."""
    return KEY_MARKER + base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode("ascii")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def visible_prefix(key: str) -> str:
    return key[len(KEY_MARKER) : len(KEY_MARKER) + VISIBLE_PREFIX_LENGTH]


def looks_like_api_key(token: str) -> bool:
    """True for the gateway's own key format (a JWT, with its dots, never matches)."""
    return API_KEY_PATTERN.fullmatch(token) is not None


def assign_new_secret(api_key: ApiKey) -> str:
    """Give ``api_key`` a fresh secret (prefix and hash, unsaved) and return the key, once."""
    while True:
        key = generate_key()
        # 48 bits of prefix: a clash is rare, but the prefix is the lookup and must be unique.
        if not ApiKey.objects.filter(key_prefix=visible_prefix(key)).exclude(pk=api_key.pk).exists():
            break
    api_key.key_prefix = visible_prefix(key)
    api_key.key_hash = hash_key(key)
    return key


def issue_api_key(**fields: Any) -> tuple[ApiKey, str]:
    """Create and save a key; the returned string is the only time the key exists in clear."""
    api_key = ApiKey(**fields)
    key = assign_new_secret(api_key)
    api_key.full_clean()
    api_key.save()
    return api_key, key


def rotate_api_key(api_key: ApiKey) -> str:
    """Replace the secret; the old key stops working at once. Same id: limits, usage and sessions
    (bound to ``key:<id>``) carry over."""
    key = assign_new_secret(api_key)
    api_key.save(update_fields=["key_prefix", "key_hash"])
    return key


def revoke_api_key(api_key: ApiKey) -> None:
    """Refuse the key from now on, for good (rotation does not bring it back)."""
    api_key.revoked_at = timezone.now()
    api_key.enabled = False
    api_key.save(update_fields=["revoked_at", "enabled"])


# --- the in-process cache ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedKey:
    """What the hot path knows of one key (no secret: only its hash)."""

    id: int
    name: str
    prefix: str
    key_hash: str
    owner_id: int | None
    owner_active: bool
    permissions: frozenset[str]
    expires_at: datetime | None
    enabled: bool
    revoked: bool
    limits: tuple[CompiledPolicy, ...]

    @property
    def principal_id(self) -> str:
        return f"key:{self.id}"

    def refusal_reason(self, now: datetime) -> str | None:
        """Why this (correctly presented) key is refused now, or None when it is good."""
        if self.revoked:
            return REVOKED
        if not self.enabled:
            return DISABLED
        if not self.owner_active:
            return OWNER_INACTIVE
        if self.expires_at is not None and self.expires_at <= now:
            return EXPIRED
        return None


@dataclass(frozen=True, slots=True)
class KeyCache:
    by_prefix: dict[str, CachedKey]
    by_id: dict[str, CachedKey]


def compile_key(api_key: ApiKey) -> CachedKey:
    limits = tuple(
        CompiledPolicy(api_key.pk, f"API key per-{window} limit", Scope.API_KEY, Limit.sliding_window(count, seconds), frozenset())
        for window, seconds, field in KEY_LIMIT_WINDOWS
        if (count := getattr(api_key, field))
    )
    owner = api_key.owner
    return CachedKey(
        id=api_key.pk,
        name=api_key.name,
        prefix=api_key.key_prefix,
        key_hash=api_key.key_hash,
        owner_id=api_key.owner_id,
        owner_active=owner is None or owner.is_active,
        permissions=frozenset(api_key.permissions or ()),
        expires_at=api_key.expires_at,
        enabled=api_key.enabled,
        revoked=api_key.revoked_at is not None,
        limits=limits,
    )


def build_key_cache() -> KeyCache:
    """Every key with its owner (one query)."""
    keys = [compile_key(api_key) for api_key in ApiKey.objects.select_related("owner")]
    return KeyCache({key.prefix: key for key in keys}, {str(key.id): key for key in keys})


# The compiled keys; rebuilt on first use and whenever the config version moves.
_keys: ConfigCache[KeyCache] = ConfigCache(build_key_cache)


def find_key(presented: str) -> CachedKey | None:
    """The key ``presented`` is, or None; the hash is compared in constant time, and computed
    even for an unknown prefix so timing does not tell which prefixes exist."""
    candidate = _keys.get().by_prefix.get(visible_prefix(presented))
    expected = candidate.key_hash if candidate is not None else _UNMATCHABLE_HASH
    matches = hmac.compare_digest(hash_key(presented), expected)
    return candidate if matches else None


def permissions_for(api_key_id: str) -> frozenset[str]:
    """The permissions of the key an exchange used (``exchange.api_key_id``); none for "" or an
    unknown id. For the authorization stage: no database query."""
    key = _keys.get().by_id.get(api_key_id)
    return key.permissions if key is not None else frozenset()


# --- per-key rate limits -----------------------------------------------------------------------


def limit_counter_key(policy: CompiledPolicy) -> str:
    return f"rl:apikey:{policy.id}:{int(policy.limit.window_seconds)}"


def enforce_api_key_limits(exchange: Exchange) -> HttpResponse | None:
    """Count the request against its key's per-minute/hour/day windows; 429 when one is full.

    Same error and headers as the policy limits (``security.ratelimit``); the quota headers
    already set by them are replaced only when this key has fewer requests remaining.
    """
    key = _keys.get().by_id.get(exchange.api_key_id) if exchange.api_key_id else None
    if key is None:
        return None
    tightest: Decision | None = None
    for policy in key.limits:
        decision = count_request(policy, limit_counter_key(policy))
        if not decision.allowed:
            raise refusal(policy, decision)
        if tightest is None or decision.remaining < tightest.remaining:
            tightest = decision
    if tightest is not None and tightest.remaining < _remaining_already_announced(exchange):
        exchange.response_headers.update(quota_headers(tightest))
    return None


def _remaining_already_announced(exchange: Exchange) -> float:
    announced = exchange.response_headers.get(REMAINING_HEADER)
    return float(announced) if announced is not None else float("inf")


# --- usage -------------------------------------------------------------------------------------


def requests_key(key_id: int) -> str:
    return f"apikey:usage:{key_id}:requests"


def latency_key(key_id: int) -> str:
    return f"apikey:usage:{key_id}:latency_ms"


def last_used_key(key_id: int) -> str:
    return f"apikey:usage:{key_id}:last_used"


def record_usage(key_id: int, latency_ms: float, at: float | None = None) -> None:
    """Count one finished exchange in the state store (never a database write per request)."""
    store = get_state_store()
    try:
        store.incr(requests_key(key_id))
        store.incr(latency_key(key_id), max(0, round(latency_ms)))
        store.set(last_used_key(key_id), repr(time.time() if at is None else at), ttl=LAST_USED_TTL_SECONDS)
    except StateStoreUnavailable as exc:
        note_state_store_down("API key usage", exc)


def flush_usage() -> int:
    """Move the counted usage into the database; return how many keys were updated.

    One worker at a time (a lease in the state store), and each counter is claimed by
    subtracting exactly what was read, so requests counted meanwhile wait for the next flush
    instead of being lost. A failed database write gives the claim back. While the state store
    is down there is nothing to read: a throttled warning, not a failed job every round.
    """
    store = get_state_store()
    try:
        return _flush_under_lease(store)
    except StateStoreUnavailable as exc:
        note_state_store_down("API key usage flush", exc)
        return 0


def _flush_under_lease(store: StateStore) -> int:
    token = uuid.uuid4().hex
    if not store.set_if_absent(USAGE_FLUSH_LEASE_KEY, token, ttl=USAGE_FLUSH_LEASE_SECONDS):
        return 0
    try:
        key_ids = list(ApiKey.objects.values_list("pk", flat=True))
        return sum(_flush_key(store, key_id, values) for key_id, values in _read_usage(store, key_ids))
    finally:
        store.delete_if_equals(USAGE_FLUSH_LEASE_KEY, token)


def _read_usage(store: StateStore, key_ids: list[int]) -> list[tuple[int, list[str | None]]]:
    names = [name for key_id in key_ids for name in (requests_key(key_id), latency_key(key_id), last_used_key(key_id))]
    values = store.get_many(names)
    return [(key_id, values[3 * index : 3 * index + 3]) for index, key_id in enumerate(key_ids)]


def _flush_key(store: StateStore, key_id: int, values: list[str | None]) -> int:
    requests, latency_ms = int(values[0] or 0), int(values[1] or 0)
    if requests <= 0:
        return 0
    store.incr(requests_key(key_id), -requests)
    store.incr(latency_key(key_id), -latency_ms)
    update: dict[str, Any] = {
        "request_count": F("request_count") + requests,
        "latency_total_ms": F("latency_total_ms") + latency_ms,
    }
    if values[2] is not None:
        update["last_used_at"] = datetime.fromtimestamp(float(values[2]), tz=dt_timezone.utc)
    try:
        with transaction.atomic():
            # update(): no post_save, so usage never bumps the config version.
            ApiKey.objects.filter(pk=key_id).update(**update)
    except Exception:
        store.incr(requests_key(key_id), requests)
        store.incr(latency_key(key_id), latency_ms)
        raise
    return 1
